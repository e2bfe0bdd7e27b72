//! Reading `iptables-save` output into the filter-table model: the *filter section, chain
//! declarations with their policies, and each `-A` rule's matches and target. Errors name the
//! line.

use super::{AddrMatch, FilterTable, IfaceMatch, Rule, Target};
use crate::error::{Error, Result};
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

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

impl FilterTable {
    /// Parse the *filter section of iptables-save output (other tables are skipped; an input
    /// without *filter gives an empty table). Errors only on a malformed -A line (e.g.
    /// missing chain, option without its value), naming the line number and text.
    pub fn parse(save: &str) -> Result<FilterTable> {
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
                let rule = parse_rule(line).map_err(|e| {
                    Error::failed(format!(
                        "iptables-save line {}: {}: {line}",
                        index + 1,
                        e.message()
                    ))
                })?;
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
pub(super) struct Token {
    pub(super) text: String,
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
pub(super) fn tokenize(line: &str) -> Result<Vec<Token>> {
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
fn read_quoted(chars: &mut impl Iterator<Item = char>) -> Result<String> {
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
    Err(Error::failed("unterminated quote"))
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
    fn value(&mut self, option: &str) -> Result<String> {
        self.next_if(Token::is_value)
            .map(|token| token.text)
            .ok_or_else(|| Error::failed(format!("option {option} without its value")))
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
fn parse_rule(line: &str) -> Result<Rule> {
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
                .ok_or_else(|| Error::failed("'!' not followed by an option"))?
        } else {
            token
        };
        if !option.is_option() {
            return Err(Error::failed(format!(
                "unexpected word {}",
                option.render()
            )));
        }
        apply_option(&mut rule, &option.text, negated, &mut cursor)?;
    }
    Ok(rule)
}

/// Apply one top-level option (and whatever values and extension options belong to it).
fn apply_option(rule: &mut Rule, option: &str, negated: bool, cursor: &mut Cursor) -> Result<()> {
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
fn refuse_negation(option: &str, negated: bool) -> Result<()> {
    if negated {
        Err(Error::failed(format!("'!' before {option}")))
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
fn parse_net(text: &str) -> Result<Ipv4Net> {
    let bad = || Error::failed(format!("bad IPv4 address {text}"));
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
