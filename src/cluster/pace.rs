//! How fast and how far a node follows the cluster's declarations. A
//! member that declares thousands of namespaces at once (a buggy tool, a
//! compromised node, a user's script) must leave every node's engine
//! serving: adds are taken a step at a time, once the engine took the
//! previous step, up to a cap; the rest is shown as waiting. Which adds go
//! first is fair: removals and owner changes never wait behind adds, and
//! adds are taken round-robin across the members that declared them, so
//! one member's flood cannot hold back another's single declaration.

use std::collections::{BTreeMap, VecDeque};

use super::{Action, Record};
use crate::name::Name;

/// `BTSYNC_CLUSTER_ADD_STEP`: at most this many cluster adds per step.
pub const ADD_STEP_VAR: &str = "BTSYNC_CLUSTER_ADD_STEP";
/// `BTSYNC_CLUSTER_MAX_NAMESPACES`: at most this many namespaces added
/// from the cluster on this node.
pub const MAX_NAMESPACES_VAR: &str = "BTSYNC_CLUSTER_MAX_NAMESPACES";

/// 1.4.111 adds a folder over its interface in about 45 ms: a step of 100
/// is about 5 s of engine work, the longest a local `add` waits behind it.
pub const DEFAULT_ADD_STEP: usize = 100;
/// 1,000 folders cost 1.4.111 about 135 MB; the cap keeps a flood from
/// taking a small node's memory. Raise it for a cluster that needs more.
pub const DEFAULT_MAX_NAMESPACES: usize = 1000;
/// Beyond what a step can usefully be.
const MAX_ADD_STEP: usize = 10_000;
/// Beyond what one engine can serve.
const MAX_MAX_NAMESPACES: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Cluster adds taken in one step.
    pub step: usize,
    /// Namespaces from the cluster this node holds at most.
    pub max_namespaces: usize,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace {
            step: DEFAULT_ADD_STEP,
            max_namespaces: DEFAULT_MAX_NAMESPACES,
        }
    }
}

pub fn parse_step(text: &str) -> Result<usize, String> {
    parse_count(text, MAX_ADD_STEP, DEFAULT_ADD_STEP)
}

pub fn parse_max_namespaces(text: &str) -> Result<usize, String> {
    parse_count(text, MAX_MAX_NAMESPACES, DEFAULT_MAX_NAMESPACES)
}

fn parse_count(text: &str, max: usize, example: usize) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{:?} is not a number from 1 to {max} (e.g. {example})",
            text.chars().take(40).collect::<String>()
        )),
    }
}

/// `actions` in the order they are to be taken: every removal and owner
/// change first (as reconcile gave them), then the adds, one per declaring
/// device in turn, the device with the fewest adds waiting first (ties: by
/// device id), each device's adds by name.
pub fn fair_order(actions: Vec<Action>, winners: &BTreeMap<Name, &Record>) -> Vec<Action> {
    let mut ordered = Vec::with_capacity(actions.len());
    let mut adds_by_device: BTreeMap<&str, VecDeque<Action>> = BTreeMap::new();
    for action in actions {
        match &action {
            Action::Add { name, .. } => {
                let device = winners.get(name).map_or("", |r| r.device.as_str());
                adds_by_device.entry(device).or_default().push_back(action);
            }
            Action::SetRule { .. } | Action::Remove { .. } => ordered.push(action),
        }
    }
    let mut queues: Vec<(&str, VecDeque<Action>)> = adds_by_device.into_iter().collect();
    queues.sort_by_key(|(device, adds)| (adds.len(), *device));
    while !queues.is_empty() {
        for (_, adds) in &mut queues {
            ordered.extend(adds.pop_front());
        }
        queues.retain(|(_, adds)| !adds.is_empty());
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Intent;
    use crate::keys::Access;

    fn record(name: &str, device: &str) -> Record {
        Record {
            name: Name::parse(name).expect("name"),
            intent: Intent::Declared(Access::ReadWrite),
            at_ms: 1,
            device: device.to_owned(),
            device_name: device.to_owned(),
            rule: None,
        }
    }

    fn add(name: &str) -> Action {
        Action::Add {
            name: Name::parse(name).expect("name"),
            access: Access::ReadWrite,
            rule: None,
        }
    }

    fn label(action: &Action) -> String {
        match action {
            Action::Add { name, .. } => format!("+{name}"),
            Action::SetRule { name, .. } => format!("~{name}"),
            Action::Remove { name, .. } => format!("-{name}"),
        }
    }

    #[test]
    fn removals_come_first_and_a_flood_cannot_hold_back_another_members_add() {
        let mut records = vec![record("legit", "b"), record("gone", "b")];
        records.extend((0..5).map(|i| record(&format!("flood{i}"), "c")));
        records.push(record("other", "d"));
        records.push(record("other2", "d"));
        let winners: BTreeMap<Name, &Record> =
            records.iter().map(|r| (r.name.clone(), r)).collect();
        let mut actions: Vec<Action> = (0..5).map(|i| add(&format!("flood{i}"))).collect();
        actions.push(add("other"));
        actions.push(add("legit"));
        actions.push(Action::Remove {
            name: Name::parse("gone").expect("name"),
            purge: false,
        });
        actions.push(add("other2"));
        let order: Vec<String> = fair_order(actions, &winners).iter().map(label).collect();
        assert_eq!(
            order,
            [
                "-gone", "+legit", "+other", "+flood0", "+other2", "+flood1", "+flood2", "+flood3",
                "+flood4"
            ]
        );
    }

    #[test]
    fn counts_are_checked() {
        assert_eq!(parse_step(" 25 "), Ok(25));
        assert!(parse_step("0").is_err());
        assert!(parse_step("-1").is_err());
        assert!(parse_step("10001").is_err());
        assert_eq!(parse_max_namespaces("3000"), Ok(3000));
        let refused = parse_max_namespaces("lots").unwrap_err();
        assert!(
            refused.contains("\"lots\" is not a number from 1 to"),
            "{refused}"
        );
    }
}
