//! Unit tests of the policy: modes, thresholds, finalize, and the policy file's validation.

use super::*;
