//! Walking the FORWARD chain for one flow (in-interface, out-interface, source, destination,
//! new or established) the way the kernel does: rules in order, jumps followed, RETURN and the
//! end of a chain handled, and the deciding rule, the path and the rules it could not judge
//! reported.
//!
//! Only the matches the model understands are judged. Any other match (protocol, ports,
//! marks, ...) makes a rule uncertain: it is treated as not matching and listed in
//! [`Outcome::uncertain`], so a caller can say "probably" instead of guessing.

use super::{AddrMatch, FilterTable, IfaceMatch, Rule, Target};
use serde::Serialize;
use std::net::Ipv4Addr;

/// How deep `-j`/`-g` may nest before the evaluator stops following. The kernel refuses loops of
/// user chains, but a hand-written or truncated dump might hold one, and the walk must end.
pub(super) const MAX_DEPTH: usize = 32;

/// How many rules one walk may look at. A real table is walked in a number of steps close to
/// its size, but chains that jump to each other several times multiply: two jumps per chain
/// nested MAX_DEPTH deep are 2^32 steps (a hang). Past this many the walk stops, says so in
/// [`Outcome::uncertain`], and ends at FORWARD's policy.
pub(super) const MAX_RULE_VISITS: usize = 20_000;

/// A packet to route through FORWARD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub in_iface: String,
    pub out_iface: String,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// true: first packet of a connection (conntrack NEW); false: ESTABLISHED reply.
    pub new_connection: bool,
}

/// How a flow leaves FORWARD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowVerdict {
    Accepted,
    Dropped,
    Rejected,
}

/// The result of walking FORWARD for one flow, with the evidence a user needs to believe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub verdict: FlowVerdict,
    /// The rule line that decided, or "policy DROP of FORWARD" / "policy ACCEPT of FORWARD".
    pub decided_by: String,
    /// Every rule that matched on the way, in order (jumps included), as their text.
    pub path: Vec<String>,
    /// Rules skipped because they contain matches the evaluator does not understand and that
    /// would have changed the walk had they matched (target ACCEPT/DROP/REJECT/RETURN, a jump or
    /// a goto), and whose understood matches did match; their text, each once.
    pub uncertain: Vec<String>,
}

impl FilterTable {
    /// Walk FORWARD for this flow: rules in order; a rule matches when all understood matches
    /// match and it has no unknown matches; ACCEPT/DROP/REJECT end the walk; -j CHAIN walks that
    /// chain and continues after it on RETURN or end of chain; -g CHAIN walks it and on its
    /// RETURN/end continues as if the calling chain returned; RETURN in FORWARD or end of FORWARD
    /// means the policy (missing policy = ACCEPT). Other targets continue. Recursion depth limited
    /// to 32 (deeper = treat as return). Jump to a chain that does not exist = no-op.
    pub fn evaluate_forward(&self, flow: &Flow) -> Outcome {
        let mut walk = Walk {
            table: self,
            flow,
            path: Vec::new(),
            uncertain: Vec::new(),
            visits: 0,
        };
        let (verdict, decided_by) = match walk.chain("FORWARD", 0) {
            Step::Decided(verdict, text) => (verdict, text),
            Step::Returned => self.forward_policy(),
        };
        Outcome {
            verdict,
            decided_by,
            path: walk.path,
            uncertain: walk.uncertain,
        }
    }

    /// What happens to a packet that falls off the end of FORWARD. No policy means no filter
    /// table was loaded, and then nothing filters.
    fn forward_policy(&self) -> (FlowVerdict, String) {
        let policy = self.policy("FORWARD").unwrap_or("ACCEPT");
        let verdict = match policy {
            "DROP" => FlowVerdict::Dropped,
            _ => FlowVerdict::Accepted,
        };
        (verdict, format!("policy {policy} of FORWARD"))
    }
}

impl Flow {
    /// A frame a Linux bridge forwarded between two of its own ports (seen in FORWARD through
    /// br_netfilter) enters and leaves on the same bridge device.
    fn is_bridged(&self) -> bool {
        self.in_iface == self.out_iface
    }
}

impl Rule {
    /// Whether every understood match holds for `flow`; unknown matches are not looked at.
    fn known_matches(&self, flow: &Flow) -> bool {
        self.in_iface
            .as_ref()
            .is_none_or(|m| m.matches(&flow.in_iface))
            && self
                .out_iface
                .as_ref()
                .is_none_or(|m| m.matches(&flow.out_iface))
            && self.source.as_ref().is_none_or(|m| m.matches(flow.src))
            && self
                .destination
                .as_ref()
                .is_none_or(|m| m.matches(flow.dst))
            && states_match(&self.states, flow.new_connection)
            && self
                .physdev_is_bridged
                .is_none_or(|bridged| bridged == flow.is_bridged())
    }

    /// Whether the walk would go differently had this rule matched; only such rules are worth
    /// reporting as uncertain.
    fn changes_walk(&self) -> bool {
        !matches!(self.target, Target::Other(_))
    }
}

impl IfaceMatch {
    fn matches(&self, iface: &str) -> bool {
        let hit = match self.name.strip_suffix('+') {
            Some(prefix) => iface.starts_with(prefix),
            None => iface == self.name,
        };
        hit != self.negated
    }
}

impl AddrMatch {
    fn matches(&self, addr: Ipv4Addr) -> bool {
        self.net.contains(&addr) != self.negated
    }
}

/// Any of the listed states must hold; NEW is the first packet, ESTABLISHED/RELATED the rest.
/// The other states (INVALID, UNTRACKED, DNAT, SNAT) never describe the flows we check.
fn states_match(states: &[String], new_connection: bool) -> bool {
    states.is_empty()
        || states.iter().any(|state| match state.as_str() {
            "NEW" => new_connection,
            "ESTABLISHED" | "RELATED" => !new_connection,
            _ => false,
        })
}

/// Where a walk through one chain ended.
enum Step {
    /// ACCEPT, DROP or REJECT: the verdict and the rule's text.
    Decided(FlowVerdict, String),
    /// RETURN or the end of the chain: the caller goes on.
    Returned,
}

/// The state of one evaluation: the evidence gathered while walking.
struct Walk<'a> {
    table: &'a FilterTable,
    flow: &'a Flow,
    path: Vec<String>,
    uncertain: Vec<String>,
    /// Rules looked at so far, against MAX_RULE_VISITS.
    visits: usize,
}

impl Walk<'_> {
    /// Walk the rules of `name` in order. A chain that does not exist returns at once, which
    /// makes a jump to it a no-op.
    fn chain(&mut self, name: &str, depth: usize) -> Step {
        let table = self.table;
        let Some(rules) = table.chains.get(name) else {
            return Step::Returned;
        };
        for rule in rules {
            self.visits += 1;
            if self.visits > MAX_RULE_VISITS {
                if self.visits == MAX_RULE_VISITS + 1 {
                    self.uncertain.push(format!(
                        "the walk stopped after {MAX_RULE_VISITS} rules (chains jump to each \
                         other too often to follow), at: {}",
                        rule.text
                    ));
                }
                return Step::Returned;
            }
            if !self.matches(rule) {
                continue;
            }
            self.path.push(rule.text.clone());
            let decided = |verdict| Step::Decided(verdict, rule.text.clone());
            match &rule.target {
                Target::Accept => return decided(FlowVerdict::Accepted),
                Target::Drop => return decided(FlowVerdict::Dropped),
                Target::Reject => return decided(FlowVerdict::Rejected),
                Target::Return => return Step::Returned,
                Target::Jump(next) => {
                    if let Step::Decided(verdict, text) = self.enter(next, depth) {
                        return Step::Decided(verdict, text);
                    }
                }
                Target::Goto(next) if table.chains.contains_key(next) => {
                    return self.enter(next, depth);
                }
                Target::Goto(_) | Target::Other(_) => {}
            }
        }
        Step::Returned
    }

    /// Walk a called chain one level deeper; past the depth limit it counts as returning.
    fn enter(&mut self, name: &str, depth: usize) -> Step {
        if depth >= MAX_DEPTH {
            return Step::Returned;
        }
        self.chain(name, depth + 1)
    }

    /// Whether `rule` matches the flow. A rule whose understood matches hold but which has
    /// unknown ones does not match, and is noted as uncertain when it could have changed the walk.
    fn matches(&mut self, rule: &Rule) -> bool {
        if !rule.known_matches(self.flow) {
            return false;
        }
        if rule.unknown.is_empty() {
            return true;
        }
        if rule.changes_walk() && !self.uncertain.contains(&rule.text) {
            self.uncertain.push(rule.text.clone());
        }
        false
    }
}
