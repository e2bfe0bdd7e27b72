//! The iptables `filter` table as `iptables-save -t filter` prints it: chains, their policies
//! and their rules in order, with the matches strata understands (interfaces, IPv4 addresses,
//! conntrack state, physdev "is bridged", comments) and the rest kept as text. `parse` reads a
//! dump; `walk` says what FORWARD does with one flow.
//!
//! strata's preflight checks use it to decide whether Docker's FORWARD policy DROP blocks VM
//! traffic on a bridge. The mere presence of a rule proves little: libvirt's `LIBVIRT_FWX`,
//! `LIBVIRT_FWI` and `LIBVIRT_FWO` jumps and Docker's `DOCKER-USER`, `DOCKER-FORWARD` and
//! `DOCKER-ISOLATION-*` jumps change order whenever dockerd restarts, and the order is what
//! decides.

mod parse;
mod walk;

pub use walk::{Flow, FlowVerdict, Outcome};

use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::BTreeMap;

/// Read the host's filter table (`iptables-save -t filter`).
pub fn read() -> crate::error::Result<FilterTable> {
    read_on(&crate::host::runner::Runner::Local)
}

/// The filter table of `runner`'s host.
pub fn read_on(runner: &crate::host::runner::Runner) -> crate::error::Result<FilterTable> {
    FilterTable::parse(&runner.capture("iptables-save", &["-t", "filter"])?)
}

/// One rule of a chain, as parsed from an `-A CHAIN ...` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// The line as iptables-save printed it, e.g. "-A FORWARD -i virbr1 -o virbr1 -j ACCEPT".
    pub text: String,
    pub chain: String,
    pub in_iface: Option<IfaceMatch>,
    pub out_iface: Option<IfaceMatch>,
    pub source: Option<AddrMatch>,
    pub destination: Option<AddrMatch>,
    /// conntrack/state states this rule requires (-m conntrack --ctstate A,B or -m state --state
    /// A,B), upper-case; empty = any.
    pub states: Vec<String>,
    /// -m physdev --physdev-is-bridged (possibly negated): Some(true) means must be bridged,
    /// Some(false) must not be.
    pub physdev_is_bridged: Option<bool>,
    /// Matches the evaluator does not understand (e.g. "-p tcp", "--dport 53",
    /// "-m mark --mark 0x1"); a rule with any of these is "uncertain". `-m comment --comment ...`
    /// is NOT listed here (it always matches), neither are "-m conntrack"/"-m state"/"-m physdev"
    /// themselves once their options were understood.
    pub unknown: Vec<String>,
    /// What the rule does when it matches. A rule without `-j`/`-g` (a pure counter) has
    /// `Target::Other("")`: it never ends the walk.
    pub target: Target,
}

/// An `-i`/`-o` match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfaceMatch {
    pub negated: bool,
    /// name; a trailing '+' is a prefix wildcard (e.g. "virbr+")
    pub name: String,
}

/// An `-s`/`-d` match; a plain address is a /32.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddrMatch {
    pub negated: bool,
    pub net: Ipv4Net,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Accept,
    Drop,
    Reject,
    Return,
    /// -j CHAIN (user chain)
    Jump(String),
    /// -g CHAIN
    Goto(String),
    /// anything else (LOG, MASQUERADE, MARK, CT, ...): non-terminating here
    Other(String),
}

/// The filter table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilterTable {
    /// Built-in chains and their policy ("ACCEPT"/"DROP"), from ":FORWARD DROP [0:0]" lines.
    pub policies: BTreeMap<String, String>,
    /// Every chain (built-in and user) with its rules in order. The map itself is keyed by name
    /// (so not in order of appearance); rule order within a chain is preserved.
    pub chains: BTreeMap<String, Vec<Rule>>,
}

impl FilterTable {
    /// The policy of a built-in chain, if present.
    pub fn policy(&self, chain: &str) -> Option<&str> {
        self.policies.get(chain).map(String::as_str)
    }

    /// The chain names FORWARD jumps to (-j or -g to a user chain), in rule order, without
    /// duplicates: e.g. ["DOCKER-USER", "DOCKER-ISOLATION-STAGE-1", "LIBVIRT_FWX", ...]. This is
    /// evidence for the user.
    pub fn forward_jumps(&self) -> Vec<String> {
        let mut jumps: Vec<String> = Vec::new();
        for rule in self.chains.get("FORWARD").into_iter().flatten() {
            if let Target::Jump(chain) | Target::Goto(chain) = &rule.target {
                if !jumps.contains(chain) {
                    jumps.push(chain.clone());
                }
            }
        }
        jumps
    }

    /// The rules of `chain` that carry `comment` (`-m comment --comment TEXT`) and name
    /// `iface` as their in- or out-interface, each as the words after "-A CHAIN", unquoted:
    /// what `iptables -D CHAIN` takes to delete it.
    pub fn commented_rules_on(&self, chain: &str, comment: &str, iface: &str) -> Vec<Vec<String>> {
        let names = |m: &Option<IfaceMatch>| m.as_ref().is_some_and(|m| m.name == iface);
        self.chains
            .get(chain)
            .into_iter()
            .flatten()
            .filter(|rule| names(&rule.in_iface) || names(&rule.out_iface))
            .filter_map(|rule| parse::tokenize(&rule.text).ok())
            .map(|tokens| {
                tokens
                    .into_iter()
                    .skip(2)
                    .map(|t| t.text)
                    .collect::<Vec<String>>()
            })
            .filter(|words| {
                words
                    .windows(2)
                    .any(|pair| pair[0] == "--comment" && pair[1] == comment)
            })
            .collect()
    }

    /// Whether `chain` holds a rule whose text, after "-A CHAIN ", equals `spec` word for word
    /// (whitespace-normalised), e.g. has_rule("DOCKER-USER", "-i br0 -o br0 -j ACCEPT").
    pub fn has_rule(&self, chain: &str, spec: &str) -> bool {
        let wanted: Vec<&str> = spec.split_whitespace().collect();
        self.chains.get(chain).is_some_and(|rules| {
            rules.iter().any(|rule| {
                rule.text
                    .split_whitespace()
                    .skip(2)
                    .eq(wanted.iter().copied())
            })
        })
    }
}

#[cfg(test)]
mod tests;
