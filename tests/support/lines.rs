//! Reading what a child printed: `key=value` fields, the `RESULT` line a scenario prints for its
//! parent, and the SCHED lines between the `PHASE` marker lines a scenario prints on stderr.

/// Value of `key=<number>` in a line, e.g. `field(line, "idleworkers")`.
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Value of `key=<number>` in a line, like [`field`]; panics if there is none.
pub fn num(line: &str, key: &str) -> u64 {
    field(line, key).unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// The text after `RESULT ` on the child's stdout (its scenario's figures for the parent).
pub fn result_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in\n{stdout}"))
}

/// The numbers of the `RESULT a b c ...` line.
pub fn result_numbers(stdout: &str) -> Vec<u64> {
    result_line(stdout)
        .split(' ')
        .map(|v| v.parse().expect("number"))
        .collect()
}

/// SCHED lines of `stderr` between the marker line `PHASE <from>` (or `PHASE <from> <value>`)
/// and the next `PHASE` line.
pub fn phase<'a>(stderr: &'a str, from: &str) -> Vec<&'a str> {
    let marker = format!("PHASE {from}");
    stderr
        .lines()
        .skip_while(|l| {
            l.strip_prefix(marker.as_str())
                .is_none_or(|rest| !rest.is_empty() && !rest.starts_with(' '))
        })
        .skip(1)
        .take_while(|l| !l.starts_with("PHASE "))
        .filter(|l| l.starts_with("SCHED "))
        .collect()
}

/// The [`phase`] lines of runtime `label` only (`None`: the unlabelled main one).
pub fn phase_of<'a>(stderr: &'a str, from: &str, label: Option<&str>) -> Vec<&'a str> {
    phase(stderr, from)
        .into_iter()
        .filter(|l| runtime_of(l) == label)
        .collect()
}

/// The `runtime=<label>` of a SCHED line, if it has one.
pub fn runtime_of(line: &str) -> Option<&str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("runtime="))
}

/// The `runtime=` labels on the SCHED lines of `stderr` (the main runtime's lines have none).
pub fn sched_labels(stderr: &str) -> std::collections::BTreeSet<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("SCHED "))
        .filter_map(runtime_of)
        .map(str::to_owned)
        .collect()
}

/// The value of a `RESULT <key> <value>` line the child printed (several such lines may stand).
pub fn result_value<T: std::str::FromStr>(stdout: &str, key: &str) -> T {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("RESULT ")?
                .strip_prefix(key)?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no RESULT {key} in:\n{stdout}"))
}

/// The stack printed under each `STALL ` line of `stderr` (its indented lines), in order.
pub fn stall_stacks(stderr: &str) -> Vec<Vec<&str>> {
    let lines: Vec<&str> = stderr.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("STALL "))
        .map(|(at, _)| {
            lines[at + 1..]
                .iter()
                .take_while(|l| l.starts_with("  "))
                .copied()
                .collect()
        })
        .collect()
}

/// Panics unless the stack under the `i`-th `STALL ` line of `stderr` names `functions[i]`, for
/// each `i`.
pub fn assert_stalls_name(stderr: &str, functions: &[&str]) {
    let stacks = stall_stacks(stderr);
    for (i, f) in functions.iter().enumerate() {
        let stack = &stacks[i];
        assert!(
            stack.iter().any(|l| l.contains(f)),
            "STALL {i} names {f}:\n{stderr}"
        );
    }
}
