//! Shared benchmark support: the generated alert corpus, request templates, load generator, reference servers.
#![allow(dead_code)]

pub(crate) mod corpus;
pub(crate) mod load;
pub(crate) mod reference;
pub(crate) mod requests;
