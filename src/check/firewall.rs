//! The iptables `filter` table as `iptables-save -t filter` prints it, and a small evaluator that
//! walks the FORWARD chain for one flow (in-interface, out-interface, source, destination) to say
//! which rule accepts or drops it.
//!
//! strata's preflight checks use it to decide whether Docker's FORWARD policy DROP blocks VM
//! traffic on a bridge. The mere presence of a rule proves little: libvirt's `LIBVIRT_FWX`,
//! `LIBVIRT_FWI` and `LIBVIRT_FWO` jumps and Docker's `DOCKER-USER`, `DOCKER-FORWARD` and
//! `DOCKER-ISOLATION-*` jumps change order whenever dockerd restarts, and the order is what
//! decides. So the evaluator reads the rules in order, follows jumps the way the kernel does, and
//! reports the deciding rule, the path it took and the rules it could not judge.
//!
//! Only what those chains use is understood: interfaces, IPv4 addresses, conntrack state,
//! physdev "is bridged" and comments. Any other match (protocol, ports, marks, ...) makes a rule
//! uncertain: it is treated as not matching and listed in [`Outcome::uncertain`], so a caller can
//! say "probably" instead of guessing.

use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// How deep `-j`/`-g` may nest before the evaluator stops following. The kernel refuses loops of
/// user chains, but a hand-written or truncated dump might hold one, and the walk must end.
const MAX_DEPTH: usize = 32;

/// How many rules one walk may look at. A real table is walked in a number of steps close to
/// its size, but chains that jump to each other several times multiply: two jumps per chain
/// nested MAX_DEPTH deep are 2^32 steps (a hang). Past this many the walk stops, says so in
/// [`Outcome::uncertain`], and ends at FORWARD's policy.
const MAX_RULE_VISITS: usize = 20_000;

/// Options of iptables itself rather than of a match or target extension. One of these ends the
/// option list of a preceding `-m MODULE` or `-j TARGET`.
const CORE_OPTIONS: &[&str] = &[
    "-i",
    "--in-interface",
    "-o",
    "--out-interface",
    "-s",
    "--source",
    "--src",
    "-d",
    "--destination",
    "--dst",
    "-p",
    "--protocol",
    "-m",
    "--match",
    "-j",
    "--jump",
    "-g",
    "--goto",
    "-f",
    "--fragment",
    "-c",
    "--set-counters",
];

/// Target extensions shipped with iptables. A `-j` to one of these is not a jump to a user chain
/// (unless the dump declares a chain of that name, which iptables itself forbids).
const EXTENSION_TARGETS: &[&str] = &[
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNAT",
    "DSCP",
    "ECN",
    "HMARK",
    "IDLETIMER",
    "LED",
    "LOG",
    "MARK",
    "MASQUERADE",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "QUEUE",
    "RATEEST",
    "REDIRECT",
    "SECMARK",
    "SET",
    "SNAT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
];

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
    /// Parse the *filter section of iptables-save output (other tables are skipped; an input
    /// without *filter gives an empty table). Errors (String) only on a malformed -A line (e.g.
    /// missing chain, option without its value), naming the line number and text.
    pub fn parse(save: &str) -> Result<FilterTable, String> {
        let mut table = FilterTable::default();
        let mut in_filter = false;
        for (index, raw) in save.lines().enumerate() {
            let line = strip_counters(raw.trim());
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                in_filter = name.trim() == "filter";
            } else if line == "COMMIT" {
                in_filter = false;
            } else if !in_filter {
                continue;
            } else if let Some(declaration) = line.strip_prefix(':') {
                table.declare_chain(declaration);
            } else if is_append(line) {
                let rule =
                    parse_rule(line).map_err(|e| format!("line {}: {e}: {line}", index + 1))?;
                table
                    .chains
                    .entry(rule.chain.clone())
                    .or_default()
                    .push(rule);
            }
        }
        table.mark_user_chain_jumps();
        Ok(table)
    }

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

    /// Record a ":NAME POLICY [packets:bytes]" line; user chains have policy "-".
    fn declare_chain(&mut self, declaration: &str) {
        let mut words = declaration.split_whitespace();
        let Some(name) = words.next() else {
            return;
        };
        self.chains.entry(name.to_string()).or_default();
        match words.next() {
            Some("-") | None => {}
            Some(policy) => {
                self.policies.insert(name.to_string(), policy.to_string());
            }
        }
    }

    /// A `-j NAME` parsed as an extension target is really a jump when the dump has a chain of
    /// that name. Done after the whole section is read, so declaration order does not matter.
    fn mark_user_chain_jumps(&mut self) {
        let names: BTreeSet<String> = self.chains.keys().cloned().collect();
        for rule in self.chains.values_mut().flatten() {
            if let Target::Other(name) = &rule.target {
                if names.contains(name) {
                    rule.target = Target::Jump(name.clone());
                }
            }
        }
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

/// `iptables-save -c` prefixes rules with "[packets:bytes] "; the rule starts after it.
fn strip_counters(line: &str) -> &str {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .map_or(line, |(_, rule)| rule.trim_start())
}

/// Whether the line appends a rule ("-A CHAIN ..."), the only rule form iptables-save prints.
fn is_append(line: &str) -> bool {
    matches!(line.split_whitespace().next(), Some("-A" | "--append"))
}

/// One word of a rule line. Quoted words (comments, log prefixes) are always values, even when
/// they start with '-'.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    quoted: bool,
}

impl Token {
    fn is_bang(&self) -> bool {
        !self.quoted && self.text == "!"
    }

    fn is_option(&self) -> bool {
        !self.quoted && self.text.len() > 1 && self.text.starts_with('-')
    }

    fn is_value(&self) -> bool {
        self.quoted || !(self.is_option() || self.is_bang())
    }

    /// An option of a match or target extension (e.g. "--ctstate", "--reject-with").
    fn is_extension_option(&self) -> bool {
        self.is_option() && self.text.starts_with("--") && !CORE_OPTIONS.contains(&&*self.text)
    }

    /// The word as it would be written back on a command line.
    fn render(&self) -> String {
        if self.quoted || self.text.is_empty() || self.text.contains(char::is_whitespace) {
            let escaped = self.text.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{escaped}\"")
        } else {
            self.text.clone()
        }
    }
}

/// Split a rule line into words the way iptables-save quotes them: double quotes around a word
/// with spaces, `\"` and `\\` escaped inside.
fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None => return Ok(tokens),
            Some('"') => {
                chars.next();
                let text = read_quoted(&mut chars)?;
                tokens.push(Token { text, quoted: true });
            }
            Some(_) => {
                let mut text = String::new();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    text.push(c);
                }
                tokens.push(Token {
                    text,
                    quoted: false,
                });
            }
        }
    }
}

/// Read up to the closing quote (already past the opening one), undoing the escapes.
fn read_quoted(chars: &mut impl Iterator<Item = char>) -> Result<String, String> {
    let mut text = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Ok(text),
            '\\' => {
                let Some(escaped) = chars.next() else { break };
                if escaped != '"' && escaped != '\\' {
                    text.push('\\');
                }
                text.push(escaped);
            }
            other => text.push(other),
        }
    }
    Err("unterminated quote".to_string())
}

/// The options of one match or target extension: `[!] --name [values...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OptionGroup {
    negated: bool,
    name: String,
    values: Vec<Token>,
}

impl OptionGroup {
    fn render(&self) -> String {
        let mut words = Vec::new();
        if self.negated {
            words.push("!".to_string());
        }
        words.push(self.name.clone());
        words.extend(self.values.iter().map(Token::render));
        words.join(" ")
    }
}

/// A read position in the words of one rule line.
struct Cursor {
    tokens: Vec<Token>,
    pos: usize,
}

impl Cursor {
    fn peek(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.pos + ahead)
    }

    fn next(&mut self) -> Option<Token> {
        self.next_if(|_| true)
    }

    fn next_if(&mut self, wanted: impl Fn(&Token) -> bool) -> Option<Token> {
        let token = self.tokens.get(self.pos).filter(|t| wanted(t)).cloned();
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    /// The one value `option` needs; its absence makes the line malformed.
    fn value(&mut self, option: &str) -> Result<String, String> {
        self.next_if(Token::is_value)
            .map(|token| token.text)
            .ok_or_else(|| format!("option {option} without its value"))
    }

    /// All values that follow (an extension option may take none, one or several).
    fn values(&mut self) -> Vec<Token> {
        let mut values = Vec::new();
        while let Some(token) = self.next_if(Token::is_value) {
            values.push(token);
        }
        values
    }

    /// The options of the extension just named by `-m` or `-j`: they run until the next
    /// option of iptables itself or the end of the line.
    fn extension_options(&mut self) -> Vec<OptionGroup> {
        let mut groups = Vec::new();
        loop {
            let negated = self.peek(0).is_some_and(Token::is_bang);
            let at = usize::from(negated);
            if !self.peek(at).is_some_and(Token::is_extension_option) {
                return groups;
            }
            self.pos += at;
            let Some(name) = self.next() else {
                return groups;
            };
            groups.push(OptionGroup {
                negated,
                name: name.text,
                values: self.values(),
            });
        }
    }
}

/// Parse one "-A CHAIN ..." line (the caller checked that it starts with -A).
fn parse_rule(line: &str) -> Result<Rule, String> {
    let mut cursor = Cursor {
        tokens: tokenize(line)?,
        pos: 0,
    };
    cursor.next();
    let chain = cursor.value("-A")?;
    let mut rule = Rule {
        text: line.to_string(),
        chain,
        in_iface: None,
        out_iface: None,
        source: None,
        destination: None,
        states: Vec::new(),
        physdev_is_bridged: None,
        unknown: Vec::new(),
        target: Target::Other(String::new()),
    };
    while let Some(token) = cursor.next() {
        let negated = token.is_bang();
        let option = if negated {
            cursor
                .next_if(Token::is_option)
                .ok_or("'!' not followed by an option")?
        } else {
            token
        };
        if !option.is_option() {
            return Err(format!("unexpected word {}", option.render()));
        }
        apply_option(&mut rule, &option.text, negated, &mut cursor)?;
    }
    Ok(rule)
}

/// Apply one top-level option (and whatever values and extension options belong to it).
fn apply_option(
    rule: &mut Rule,
    option: &str,
    negated: bool,
    cursor: &mut Cursor,
) -> Result<(), String> {
    match option {
        "-i" | "--in-interface" => {
            let name = cursor.value(option)?;
            rule.in_iface = Some(IfaceMatch { negated, name });
        }
        "-o" | "--out-interface" => {
            let name = cursor.value(option)?;
            rule.out_iface = Some(IfaceMatch { negated, name });
        }
        "-s" | "--source" | "--src" => {
            let net = parse_net(&cursor.value(option)?)?;
            rule.source = Some(AddrMatch { negated, net });
        }
        "-d" | "--destination" | "--dst" => {
            let net = parse_net(&cursor.value(option)?)?;
            rule.destination = Some(AddrMatch { negated, net });
        }
        "-p" | "--protocol" => {
            let protocol = cursor.value(option)?;
            if negated || !(protocol.eq_ignore_ascii_case("all") || protocol == "0") {
                let bang = if negated { "! " } else { "" };
                rule.unknown.push(format!("{bang}{option} {protocol}"));
            }
        }
        "-m" | "--match" => {
            refuse_negation(option, negated)?;
            let module = cursor.value(option)?;
            let groups = cursor.extension_options();
            apply_module(rule, option, &module, groups);
        }
        "-j" | "--jump" => {
            refuse_negation(option, negated)?;
            rule.target = target_named(cursor.value(option)?);
            // Target options (--reject-with, --set-xmark, --to-source, ...) do not match.
            cursor.extension_options();
        }
        "-g" | "--goto" => {
            refuse_negation(option, negated)?;
            rule.target = Target::Goto(cursor.value(option)?);
        }
        "-c" | "--set-counters" => {
            refuse_negation(option, negated)?;
            cursor.value(option)?;
            cursor.value(option)?;
        }
        _ => {
            // -f, or an extension option without its -m: kept, so the rule is uncertain.
            let group = OptionGroup {
                negated,
                name: option.to_string(),
                values: cursor.values(),
            };
            rule.unknown.push(group.render());
        }
    }
    Ok(())
}

/// `!` only makes sense before a match; before -m, -j, -g or -c the line is malformed.
fn refuse_negation(option: &str, negated: bool) -> Result<(), String> {
    if negated {
        Err(format!("'!' before {option}"))
    } else {
        Ok(())
    }
}

/// Take in what is understood of `-m MODULE`; the rest goes to `unknown` as one entry
/// "-m MODULE options...", and a module never understood goes there whole.
fn apply_module(rule: &mut Rule, option: &str, module: &str, groups: Vec<OptionGroup>) {
    let known_module = matches!(module, "comment" | "conntrack" | "state" | "physdev");
    let leftover: Vec<OptionGroup> = groups
        .into_iter()
        .filter(|group| !understand(rule, module, group))
        .collect();
    if known_module && leftover.is_empty() {
        return;
    }
    let mut text = format!("{option} {module}");
    for group in &leftover {
        text.push(' ');
        text.push_str(&group.render());
    }
    rule.unknown.push(text);
}

/// Record one option of a known module into `rule`; false when it is not understood. A second
/// state or physdev match in the same rule is left unknown, since both must hold and the
/// fields describe only one.
fn understand(rule: &mut Rule, module: &str, group: &OptionGroup) -> bool {
    match (module, group.name.as_str()) {
        ("comment", "--comment") => true,
        ("conntrack", "--ctstate") | ("state", "--state")
            if !group.negated && group.values.len() == 1 && rule.states.is_empty() =>
        {
            rule.states = group.values[0]
                .text
                .split(',')
                .map(|state| state.trim().to_ascii_uppercase())
                .filter(|state| !state.is_empty())
                .collect();
            !rule.states.is_empty()
        }
        ("physdev", "--physdev-is-bridged")
            if group.values.is_empty() && rule.physdev_is_bridged.is_none() =>
        {
            rule.physdev_is_bridged = Some(!group.negated);
            true
        }
        _ => false,
    }
}

/// The target named after `-j`. Names that are neither verdicts nor iptables' own target
/// extensions are taken for user chains.
fn target_named(name: String) -> Target {
    match name.as_str() {
        "ACCEPT" => Target::Accept,
        "DROP" => Target::Drop,
        "REJECT" => Target::Reject,
        "RETURN" => Target::Return,
        other if EXTENSION_TARGETS.contains(&other) => Target::Other(name),
        _ => Target::Jump(name),
    }
}

/// An address as iptables-save prints it: "10.0.0.1" (a /32), "10.0.0.0/8", or the older
/// "10.0.0.0/255.0.0.0".
fn parse_net(text: &str) -> Result<Ipv4Net, String> {
    let bad = || format!("bad IPv4 address {text}");
    let Some((addr, mask)) = text.split_once('/') else {
        return text
            .parse::<Ipv4Addr>()
            .map(Ipv4Net::from)
            .map_err(|_| bad());
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix = match mask.parse::<u8>() {
        Ok(prefix) => prefix,
        Err(_) => mask
            .parse::<Ipv4Addr>()
            .ok()
            .and_then(|mask| ipnet::ipv4_mask_to_prefix(mask).ok())
            .ok_or_else(bad)?,
    };
    Ipv4Net::new(addr, prefix).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on Debian 12 with Docker 20.10 running and no libvirt network active.
    const DOCKER_20_10: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables) on Sat Nov 28 12:13:43 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
# Completed on Sat Nov 28 12:13:43 2026
";

    const DOCKER_USER_RETURN: &str = "-A DOCKER-USER -j RETURN";

    /// FORWARD's rules in the Docker 20.10 dump above.
    const DOCKER_FORWARD: &str = "\
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
";

    /// FORWARD's jumps that libvirt's iptables backend adds.
    const LIBVIRT_FORWARD: &str = "\
-A FORWARD -j LIBVIRT_FWX
-A FORWARD -j LIBVIRT_FWI
-A FORWARD -j LIBVIRT_FWO
";

    const FWX_ACCEPT: &str = "-A LIBVIRT_FWX -i virbr1 -o virbr1 -j ACCEPT";
    const FWO_REJECT: &str =
        "-A LIBVIRT_FWO -i virbr1 -j REJECT --reject-with icmp-port-unreachable";
    const FWI_REJECT: &str =
        "-A LIBVIRT_FWI -o virbr1 -j REJECT --reject-with icmp-port-unreachable";

    /// Docker 20.10's dump plus the rules libvirt 9.0's iptables backend writes for an
    /// isolated network on virbr1 (10.251.3.0/24), laid out as libvirt documents it; not a
    /// capture. `forward` is FORWARD's rule block, so the order can be varied.
    fn libvirt_and_docker(forward: &str) -> String {
        format!(
            "\
# Generated by iptables-save v1.8.9 (nf_tables) on Sat Nov 28 12:20:01 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
:LIBVIRT_FWI - [0:0]
:LIBVIRT_FWO - [0:0]
:LIBVIRT_FWX - [0:0]
:LIBVIRT_INP - [0:0]
:LIBVIRT_OUT - [0:0]
-A INPUT -j LIBVIRT_INP
{forward}-A OUTPUT -j LIBVIRT_OUT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
{FWI_REJECT}
{FWO_REJECT}
{FWX_ACCEPT}
-A LIBVIRT_INP -i virbr1 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_INP -i virbr1 -p tcp -m tcp --dport 53 -j ACCEPT
-A LIBVIRT_INP -i virbr1 -p udp -m udp --dport 67 -j ACCEPT
-A LIBVIRT_INP -i virbr1 -p tcp -m tcp --dport 67 -j ACCEPT
-A LIBVIRT_OUT -o virbr1 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_OUT -o virbr1 -p tcp -m tcp --dport 53 -j ACCEPT
-A LIBVIRT_OUT -o virbr1 -p udp -m udp --dport 68 -j ACCEPT
-A LIBVIRT_OUT -o virbr1 -p tcp -m tcp --dport 68 -j ACCEPT
COMMIT
# Completed on Sat Nov 28 12:20:01 2026
"
        )
    }

    /// Docker 28's filter table with DOCKER-FORWARD, DOCKER-CT and DOCKER-BRIDGE, modelled on
    /// its layout (not a capture).
    const DOCKER_28: &str = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-BRIDGE - [0:0]
:DOCKER-CT - [0:0]
:DOCKER-FORWARD - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-FORWARD
-A DOCKER ! -i docker0 -o docker0 -j DROP
-A DOCKER-BRIDGE -o docker0 -j DOCKER
-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-FORWARD -j DOCKER-CT
-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1
-A DOCKER-FORWARD -j DOCKER-BRIDGE
-A DOCKER-FORWARD -i docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
COMMIT
";

    fn flow(in_iface: &str, out_iface: &str, src: &str, dst: &str) -> Flow {
        Flow {
            in_iface: in_iface.to_string(),
            out_iface: out_iface.to_string(),
            src: src.parse().expect("test source address"),
            dst: dst.parse().expect("test destination address"),
            new_connection: true,
        }
    }

    fn established(flow: Flow) -> Flow {
        Flow {
            new_connection: false,
            ..flow
        }
    }

    fn br0_to_br0() -> Flow {
        flow("br0", "br0", "10.249.0.11", "10.249.0.12")
    }

    fn parse(save: &str) -> FilterTable {
        FilterTable::parse(save).expect("test input parses")
    }

    /// A filter table with policy DROP and the given rules, for the small cases.
    fn table_with(rules: &str) -> FilterTable {
        parse(&format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n{rules}COMMIT\n"
        ))
    }

    fn with_docker_user_rule(rule: &str) -> String {
        DOCKER_20_10.replace(DOCKER_USER_RETURN, &format!("{rule}\n{DOCKER_USER_RETURN}"))
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn docker_20_10_drops_bridge_traffic_by_policy() {
        let table = parse(DOCKER_20_10);
        assert_eq!(table.policy("FORWARD"), Some("DROP"));
        assert_eq!(table.policy("INPUT"), Some("ACCEPT"));
        assert_eq!(table.policy("DOCKER"), None);
        assert_eq!(
            table.forward_jumps(),
            strings(&["DOCKER-USER", "DOCKER-ISOLATION-STAGE-1", "DOCKER"])
        );

        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Dropped);
        assert_eq!(outcome.decided_by, "policy DROP of FORWARD");
        assert_eq!(
            outcome.path,
            strings(&[
                "-A FORWARD -j DOCKER-USER",
                "-A DOCKER-USER -j RETURN",
                "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
                "-A DOCKER-ISOLATION-STAGE-1 -j RETURN",
            ])
        );
        assert!(outcome.uncertain.is_empty());
    }

    #[test]
    fn docker_20_10_accepts_containers_going_out() {
        let table = parse(DOCKER_20_10);
        let outcome = table.evaluate_forward(&flow("docker0", "eth0", "172.17.0.2", "1.1.1.1"));
        assert_eq!(outcome.verdict, FlowVerdict::Accepted);
        assert_eq!(
            outcome.decided_by,
            "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT"
        );
        assert!(outcome
            .path
            .contains(&"-A DOCKER-ISOLATION-STAGE-2 -j RETURN".to_string()));
    }

    #[test]
    fn docker_20_10_conntrack_state_decides_replies() {
        let table = parse(DOCKER_20_10);
        let inbound = flow("eth0", "docker0", "1.1.1.1", "172.17.0.2");
        let reply = table.evaluate_forward(&established(inbound.clone()));
        assert_eq!(reply.verdict, FlowVerdict::Accepted);
        assert_eq!(
            reply.decided_by,
            "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
        let new = table.evaluate_forward(&inbound);
        assert_eq!(new.verdict, FlowVerdict::Dropped);
        assert_eq!(new.decided_by, "policy DROP of FORWARD");
        assert!(new
            .path
            .contains(&"-A FORWARD -o docker0 -j DOCKER".to_string()));

        let rule = &table.chains["FORWARD"][2];
        assert_eq!(rule.states, strings(&["RELATED", "ESTABLISHED"]));
        assert!(rule.unknown.is_empty());
    }

    #[test]
    fn docker_user_rule_lets_bridge_traffic_through() {
        let line = "-A DOCKER-USER -i br0 -o br0 -j ACCEPT";
        let table = parse(&with_docker_user_rule(line));
        assert!(table.has_rule("DOCKER-USER", "-i br0 -o br0 -j ACCEPT"));
        assert!(table.has_rule("DOCKER-USER", "  -i br0   -o br0 -j ACCEPT "));
        assert!(!table.has_rule("DOCKER-USER", "-i br0 -j ACCEPT"));
        assert!(!table.has_rule("FORWARD", "-i br0 -o br0 -j ACCEPT"));
        assert!(!parse(DOCKER_20_10).has_rule("DOCKER-USER", "-i br0 -o br0 -j ACCEPT"));

        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Accepted);
        assert_eq!(outcome.decided_by, line);
        assert_eq!(outcome.path, strings(&["-A FORWARD -j DOCKER-USER", line]));
    }

    #[test]
    fn libvirt_first_accepts_within_and_rejects_out_of_isolated_network() {
        let table = parse(&libvirt_and_docker(&format!(
            "{LIBVIRT_FORWARD}{DOCKER_FORWARD}"
        )));
        let within =
            table.evaluate_forward(&flow("virbr1", "virbr1", "10.251.3.10", "10.251.3.11"));
        assert_eq!(within.verdict, FlowVerdict::Accepted);
        assert_eq!(within.decided_by, FWX_ACCEPT);
        assert_eq!(
            within.path,
            strings(&["-A FORWARD -j LIBVIRT_FWX", FWX_ACCEPT])
        );
        assert!(within.uncertain.is_empty());

        let out = table.evaluate_forward(&flow("virbr1", "eth0", "10.251.3.10", "1.1.1.1"));
        assert_eq!(out.verdict, FlowVerdict::Rejected);
        assert_eq!(out.decided_by, FWO_REJECT);

        let into = table.evaluate_forward(&flow("eth0", "virbr1", "1.1.1.1", "10.251.3.10"));
        assert_eq!(into.verdict, FlowVerdict::Rejected);
        assert_eq!(into.decided_by, FWI_REJECT);
    }

    #[test]
    fn libvirt_rules_parse_with_their_unknown_matches() {
        let table = parse(&libvirt_and_docker(LIBVIRT_FORWARD));
        assert_eq!(table.chains["LIBVIRT_FWI"][0].target, Target::Reject);
        let dns = &table.chains["LIBVIRT_INP"][0];
        assert_eq!(dns.unknown, strings(&["-p udp", "-m udp --dport 53"]));
        assert_eq!(dns.target, Target::Accept);
        assert_eq!(table.chains["LIBVIRT_OUT"].len(), 4);
        assert_eq!(
            table.chains["INPUT"][0].target,
            Target::Jump("LIBVIRT_INP".into())
        );
    }

    #[test]
    fn libvirt_after_docker_still_accepts_within_network() {
        let libvirt_first = parse(&libvirt_and_docker(&format!(
            "{LIBVIRT_FORWARD}{DOCKER_FORWARD}"
        )));
        let docker_first = parse(&libvirt_and_docker(&format!(
            "{DOCKER_FORWARD}{LIBVIRT_FORWARD}"
        )));
        assert_eq!(
            libvirt_first.forward_jumps(),
            strings(&[
                "LIBVIRT_FWX",
                "LIBVIRT_FWI",
                "LIBVIRT_FWO",
                "DOCKER-USER",
                "DOCKER-ISOLATION-STAGE-1",
                "DOCKER",
            ])
        );
        assert_eq!(
            docker_first.forward_jumps(),
            strings(&[
                "DOCKER-USER",
                "DOCKER-ISOLATION-STAGE-1",
                "DOCKER",
                "LIBVIRT_FWX",
                "LIBVIRT_FWI",
                "LIBVIRT_FWO",
            ])
        );
        assert_ne!(libvirt_first.forward_jumps(), docker_first.forward_jumps());

        let outcome =
            docker_first.evaluate_forward(&flow("virbr1", "virbr1", "10.251.3.10", "10.251.3.11"));
        assert_eq!(outcome.verdict, FlowVerdict::Accepted);
        assert_eq!(outcome.decided_by, FWX_ACCEPT);
        assert_eq!(
            outcome.path,
            strings(&[
                "-A FORWARD -j DOCKER-USER",
                "-A DOCKER-USER -j RETURN",
                "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
                "-A DOCKER-ISOLATION-STAGE-1 -j RETURN",
                "-A FORWARD -j LIBVIRT_FWX",
                FWX_ACCEPT,
            ])
        );
        // A bridge libvirt does not manage is still dropped by Docker's policy.
        let br0 = docker_first.evaluate_forward(&br0_to_br0());
        assert_eq!(br0.verdict, FlowVerdict::Dropped);
    }

    #[test]
    fn docker_28_drops_bridge_traffic_by_policy() {
        let table = parse(DOCKER_28);
        assert_eq!(
            table.forward_jumps(),
            strings(&["DOCKER-USER", "DOCKER-FORWARD"])
        );
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Dropped);
        assert_eq!(outcome.decided_by, "policy DROP of FORWARD");
        assert_eq!(
            outcome.path,
            strings(&[
                "-A FORWARD -j DOCKER-USER",
                "-A FORWARD -j DOCKER-FORWARD",
                "-A DOCKER-FORWARD -j DOCKER-CT",
                "-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1",
                "-A DOCKER-FORWARD -j DOCKER-BRIDGE",
            ])
        );
    }

    #[test]
    fn docker_28_container_flows() {
        let table = parse(DOCKER_28);
        let out = table.evaluate_forward(&flow("docker0", "eth0", "172.17.0.2", "1.1.1.1"));
        assert_eq!(out.verdict, FlowVerdict::Accepted);
        assert_eq!(out.decided_by, "-A DOCKER-FORWARD -i docker0 -j ACCEPT");

        let inbound = flow("eth0", "docker0", "1.1.1.1", "172.17.0.2");
        let new = table.evaluate_forward(&inbound);
        assert_eq!(new.verdict, FlowVerdict::Dropped);
        assert_eq!(new.decided_by, "-A DOCKER ! -i docker0 -o docker0 -j DROP");
        let reply = table.evaluate_forward(&established(inbound));
        assert_eq!(reply.verdict, FlowVerdict::Accepted);
        assert_eq!(
            reply.decided_by,
            "-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
    }

    #[test]
    fn rule_with_unknown_match_is_skipped_and_reported() {
        let port_rule = "-A DOCKER-USER -p tcp -m tcp --dport 22 -j ACCEPT";
        let other_bridge = "-A DOCKER-USER -i eth9 -p tcp -j ACCEPT";
        let logging = "-A DOCKER-USER -m limit --limit 5/min -j LOG --log-prefix \"fwd drop: \"";
        let table = parse(&with_docker_user_rule(&format!(
            "{port_rule}\n{other_bridge}\n{logging}"
        )));
        let rule = &table.chains["DOCKER-USER"][0];
        assert_eq!(rule.unknown, strings(&["-p tcp", "-m tcp --dport 22"]));
        assert_eq!(
            table.chains["DOCKER-USER"][2].unknown,
            strings(&["-m limit --limit 5/min"])
        );
        assert_eq!(
            table.chains["DOCKER-USER"][2].target,
            Target::Other("LOG".into())
        );

        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Dropped);
        assert_eq!(outcome.decided_by, "policy DROP of FORWARD");
        // Only the rule that could have decided: the eth9 one cannot match br0 at all, and a
        // LOG rule decides nothing.
        assert_eq!(outcome.uncertain, strings(&[port_rule]));
        assert!(!outcome.path.contains(&port_rule.to_string()));
    }

    #[test]
    fn uncertain_return_is_reported() {
        let table = table_with("-A FORWARD -j CHK\n-A CHK -p tcp -j RETURN\n-A CHK -j ACCEPT\n");
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Accepted);
        assert_eq!(outcome.uncertain, strings(&["-A CHK -p tcp -j RETURN"]));
    }

    #[test]
    fn protocol_all_is_no_restriction() {
        let table = table_with("-A FORWARD -p all -j ACCEPT\n-A FORWARD ! -p 0 -j DROP\n");
        assert!(table.chains["FORWARD"][0].unknown.is_empty());
        assert_eq!(table.chains["FORWARD"][1].unknown, strings(&["! -p 0"]));
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.decided_by, "-A FORWARD -p all -j ACCEPT");
    }

    #[test]
    fn comment_with_escaped_quotes_always_matches() {
        let line =
            r#"-A FORWARD -i br0 -m comment --comment "strata: allow \"br0\" bridged" -j ACCEPT"#;
        let words: Vec<String> = tokenize(line)
            .expect("tokenizes")
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(words[7], r#"strata: allow "br0" bridged"#);
        assert_eq!(words.len(), 10);

        let table = table_with(&format!("{line}\n"));
        let rule = &table.chains["FORWARD"][0];
        assert!(rule.unknown.is_empty());
        assert_eq!(rule.target, Target::Accept);
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Accepted);
        assert_eq!(outcome.decided_by, line);
    }

    #[test]
    fn negated_source() {
        let table = table_with("-A FORWARD ! -s 10.0.0.0/8 -j REJECT --reject-with icmp-host-prohibited\n-A FORWARD -j ACCEPT\n");
        let rule = &table.chains["FORWARD"][0];
        assert_eq!(
            rule.source,
            Some(AddrMatch {
                negated: true,
                net: "10.0.0.0/8".parse().expect("net"),
            })
        );
        assert_eq!(rule.target, Target::Reject);
        let outside = table.evaluate_forward(&flow("br0", "br0", "192.168.1.2", "10.0.0.1"));
        assert_eq!(outside.verdict, FlowVerdict::Rejected);
        let inside = table.evaluate_forward(&flow("br0", "br0", "10.1.2.3", "10.0.0.1"));
        assert_eq!(inside.verdict, FlowVerdict::Accepted);
        assert_eq!(inside.decided_by, "-A FORWARD -j ACCEPT");
    }

    #[test]
    fn destination_host_and_netmask_forms() {
        let table = table_with(
            "-A FORWARD -d 10.249.0.12 -j DROP\n-A FORWARD --destination 10.249.0.0/255.255.255.0 -j ACCEPT\n",
        );
        let host = table.evaluate_forward(&br0_to_br0());
        assert_eq!(host.decided_by, "-A FORWARD -d 10.249.0.12 -j DROP");
        let other = table.evaluate_forward(&flow("br0", "br0", "10.249.0.11", "10.249.0.13"));
        assert_eq!(other.verdict, FlowVerdict::Accepted);
        assert!(FilterTable::parse("*filter\n-A FORWARD -s 300.1.1.1 -j DROP\n").is_err());
    }

    #[test]
    fn interface_prefix_wildcard() {
        let table = table_with("-A FORWARD -i virbr+ -j ACCEPT\n");
        let libvirt = table.evaluate_forward(&flow("virbr7", "eth0", "10.0.0.1", "1.1.1.1"));
        assert_eq!(libvirt.verdict, FlowVerdict::Accepted);
        assert_eq!(libvirt.decided_by, "-A FORWARD -i virbr+ -j ACCEPT");
        let vnet = table.evaluate_forward(&flow("vnet0", "eth0", "10.0.0.1", "1.1.1.1"));
        assert_eq!(vnet.verdict, FlowVerdict::Dropped);
    }

    #[test]
    fn physdev_is_bridged() {
        let table = table_with("-A FORWARD -m physdev --physdev-is-bridged -j ACCEPT\n");
        let rule = &table.chains["FORWARD"][0];
        assert_eq!(rule.physdev_is_bridged, Some(true));
        assert!(rule.unknown.is_empty());
        assert_eq!(
            table.evaluate_forward(&br0_to_br0()).verdict,
            FlowVerdict::Accepted
        );
        let routed = table.evaluate_forward(&flow("br0", "eth0", "10.249.0.11", "1.1.1.1"));
        assert_eq!(routed.verdict, FlowVerdict::Dropped);

        let negated = table_with("-A FORWARD -m physdev ! --physdev-is-bridged -j ACCEPT\n");
        assert_eq!(negated.chains["FORWARD"][0].physdev_is_bridged, Some(false));
        assert_eq!(
            negated.evaluate_forward(&br0_to_br0()).verdict,
            FlowVerdict::Dropped
        );
    }

    #[test]
    fn goto_returns_as_if_the_caller_returned() {
        let rules = "-A FORWARD -g CHK\n-A FORWARD -j ACCEPT\n-A CHK -i eth9 -j ACCEPT\n";
        let table = table_with(rules);
        assert_eq!(
            table.chains["FORWARD"][0].target,
            Target::Goto("CHK".into())
        );
        assert_eq!(table.forward_jumps(), strings(&["CHK"]));
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Dropped);
        assert_eq!(outcome.decided_by, "policy DROP of FORWARD");
        assert_eq!(outcome.path, strings(&["-A FORWARD -g CHK"]));
        let eth9 = table.evaluate_forward(&flow("eth9", "br0", "1.1.1.1", "10.0.0.1"));
        assert_eq!(eth9.decided_by, "-A CHK -i eth9 -j ACCEPT");

        // The same with -j comes back to FORWARD's next rule.
        let jumped = table_with(&rules.replace("-g CHK", "-j CHK"));
        assert_eq!(
            jumped.evaluate_forward(&br0_to_br0()).decided_by,
            "-A FORWARD -j ACCEPT"
        );
    }

    #[test]
    fn goto_inside_a_jump_returns_to_the_jumper() {
        let table = table_with(
            "-A FORWARD -j OUTER\n-A FORWARD -j ACCEPT\n-A OUTER -g INNER\n-A OUTER -j DROP\n-A INNER -j RETURN\n",
        );
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.decided_by, "-A FORWARD -j ACCEPT");
        assert_eq!(
            outcome.path,
            strings(&[
                "-A FORWARD -j OUTER",
                "-A OUTER -g INNER",
                "-A INNER -j RETURN",
                "-A FORWARD -j ACCEPT",
            ])
        );
    }

    #[test]
    fn missing_chains_and_loops_do_not_stop_the_walk() {
        let table = table_with(
            "-A FORWARD -j NOWHERE\n-A FORWARD -g NOWHERE\n-A FORWARD -j LOOP\n-A FORWARD -j ACCEPT\n-A LOOP -j LOOP\n",
        );
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Accepted);
        assert_eq!(outcome.decided_by, "-A FORWARD -j ACCEPT");
        let loops = outcome
            .path
            .iter()
            .filter(|t| *t == "-A LOOP -j LOOP")
            .count();
        assert_eq!(loops, MAX_DEPTH);
    }

    /// Found by the iptables_save fuzz target: a chain that jumps to itself twice (a mangled
    /// dump; the kernel refuses loops) made the walk take 2^32 steps. It now stops, says why,
    /// and falls to FORWARD's policy.
    #[test]
    fn chains_jumping_to_themselves_twice_end_the_walk_quickly() {
        let table = table_with(
            "-A FORWARD -j DOCKER-FORWARD
-A FORWARD -j ACCEPT
-A DOCKER-FORWARD -j DOCKER-FORWARD
-A DOCKER-FORWARD -j DOCKER-FORWARD
",
        );
        let started = std::time::Instant::now();
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(outcome.verdict, FlowVerdict::Dropped);
        assert_eq!(outcome.decided_by, "policy DROP of FORWARD");
        assert_eq!(outcome.uncertain.len(), 1, "{:?}", outcome.uncertain);
        assert!(
            outcome.uncertain[0]
                .starts_with(&format!("the walk stopped after {MAX_RULE_VISITS} rules")),
            "{:?}",
            outcome.uncertain
        );
    }

    #[test]
    fn return_in_forward_means_policy() {
        let table = table_with("-A FORWARD -j RETURN\n-A FORWARD -j ACCEPT\n");
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.decided_by, "policy DROP of FORWARD");
    }

    #[test]
    fn counters_prefix_and_counter_only_rules() {
        let table = table_with(
            "[12:3456] -A FORWARD -i br0\n[0:0] -A FORWARD -j MARK --set-xmark 0x1/0xffffffff\n",
        );
        let counter = &table.chains["FORWARD"][0];
        assert_eq!(counter.text, "-A FORWARD -i br0");
        assert_eq!(counter.target, Target::Other(String::new()));
        assert_eq!(
            table.chains["FORWARD"][1].target,
            Target::Other("MARK".into())
        );
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Dropped);
        assert_eq!(outcome.path.len(), 2);
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        let err = FilterTable::parse("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -i\nCOMMIT\n")
            .expect_err("-i without value");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("-A FORWARD -i"), "{err}");

        for bad in [
            "-A",
            "-A FORWARD -j",
            "-A FORWARD -i br0 stray",
            "-A FORWARD ! -j ACCEPT",
            "-A FORWARD -m comment --comment \"open",
            "-A FORWARD -i !",
        ] {
            let save = format!("*filter\n{bad}\nCOMMIT\n");
            let err = FilterTable::parse(&save).expect_err(bad);
            assert!(err.starts_with("line 2: "), "{bad}: {err}");
        }
    }

    #[test]
    fn only_the_filter_table_is_read() {
        let nat = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -o
-A DOCKER -i docker0 -j RETURN
COMMIT
";
        let table = parse(&format!("{nat}{DOCKER_20_10}"));
        assert!(!table.chains.contains_key("PREROUTING"));
        assert!(!table.chains.contains_key("POSTROUTING"));
        assert!(table.chains["DOCKER"].is_empty());
        assert_eq!(table.chains.values().map(Vec::len).sum::<usize>(), 11);
        assert_eq!(table, parse(DOCKER_20_10));
    }

    #[test]
    fn empty_input_filters_nothing() {
        let table = parse("");
        assert_eq!(table, FilterTable::default());
        assert_eq!(table.policy("FORWARD"), None);
        assert!(table.forward_jumps().is_empty());
        let outcome = table.evaluate_forward(&br0_to_br0());
        assert_eq!(outcome.verdict, FlowVerdict::Accepted);
        assert_eq!(outcome.decided_by, "policy ACCEPT of FORWARD");
        assert!(outcome.path.is_empty());

        let nat_only = parse("*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n");
        assert_eq!(nat_only, FilterTable::default());
    }

    #[test]
    fn serialises_with_lowercase_names() {
        let outcome = parse(DOCKER_20_10).evaluate_forward(&br0_to_br0());
        let json = serde_json::to_value(&outcome).expect("serialises");
        assert_eq!(json["verdict"], "dropped");
        let jump = serde_json::to_value(Target::Jump("DOCKER-USER".into())).expect("serialises");
        assert_eq!(jump, serde_json::json!({ "jump": "DOCKER-USER" }));
        let rule = serde_json::to_value(&parse(DOCKER_20_10).chains["FORWARD"][4]).expect("rule");
        assert_eq!(rule["out_iface"]["negated"], true);
        assert_eq!(rule["target"], "accept");
    }
}
