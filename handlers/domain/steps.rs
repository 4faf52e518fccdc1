//! The playbook's step ids as the registered handlers declare them, and the headings over them.

/// Every step id the registered handlers' tasks may cite (`KV-1`, `KV-2a`, `GEN-1`, ...), in
/// registration order, each once. Built by `services::Registry::steps` from the handlers'
/// `steps()`; nothing else lists the steps.
///
/// A *heading* is a step id whose work is its lettered sub-steps: `KV-2` heads `KV-2a`,
/// `KV-2b`, ... A heading may also be a step of its own (`DNS-2`). Policy rules may name a
/// step or a heading ([`PlaybookSteps::rule_step`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaybookSteps {
    steps: Vec<&'static str>,
}

impl PlaybookSteps {
    /// The steps given, each once, in the order first given.
    pub fn new(steps: impl IntoIterator<Item = &'static str>) -> Self {
        let mut list: Vec<&'static str> = Vec::new();
        for step in steps {
            if !list.contains(&step) {
                list.push(step);
            }
        }
        PlaybookSteps { steps: list }
    }

    /// Whether `step` is one of the steps (exactly, as tasks cite them).
    pub fn contains(&self, step: &str) -> bool {
        self.steps.contains(&step)
    }

    /// The steps, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.steps.iter().copied()
    }

    /// How many steps there are.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The headings: each step id with its lettered suffix removed (`KV-2` of `KV-2a`), once.
    pub fn headings(&self) -> Vec<&'static str> {
        let mut headings: Vec<&'static str> = Vec::new();
        for step in &self.steps {
            if let Some(heading) = heading_of(step) {
                if !headings.contains(&heading) {
                    headings.push(heading);
                }
            }
        }
        headings
    }

    /// The step id or heading a policy rule names, case-insensitively, as the playbook
    /// spells it (`kv-2` → `KV-2`); `None` when it is neither.
    pub fn rule_step(&self, text: &str) -> Option<&'static str> {
        let text = text.trim();
        self.steps
            .iter()
            .copied()
            .chain(self.headings())
            .find(|step| step.eq_ignore_ascii_case(text))
    }
}

/// The heading of a lettered sub-step (`KV-2` of `KV-2a`; `None` for `KV-1`).
fn heading_of(step: &'static str) -> Option<&'static str> {
    let heading = step.strip_suffix(|c: char| c.is_ascii_lowercase())?;
    heading
        .ends_with(|c: char| c.is_ascii_digit())
        .then_some(heading)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_kept_once_in_order_and_headings_come_from_lettered_steps() {
        let steps = PlaybookSteps::new(["KV-1", "KV-2a", "KV-2b", "KV-1", "DNS-2", "DNS-2a"]);
        assert_eq!(
            steps.iter().collect::<Vec<_>>(),
            ["KV-1", "KV-2a", "KV-2b", "DNS-2", "DNS-2a"]
        );
        assert_eq!(steps.headings(), ["KV-2", "DNS-2"]);
        assert_eq!(steps.rule_step(" kv-2 "), Some("KV-2"));
        assert_eq!(steps.rule_step("dns-2A"), Some("DNS-2a"));
        assert_eq!(steps.rule_step("KV-1"), Some("KV-1"));
        for unknown in ["KV-3", "KV-2c", "KV", "DNS-"] {
            assert_eq!(steps.rule_step(unknown), None, "{unknown}");
        }
        assert!(steps.contains("KV-2a") && !steps.contains("KV-2"));
    }
}
