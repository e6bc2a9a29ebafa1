//! The step, token count and run identifier that a folder or revision name carries.
//!
//! Covers the suites whose checkpoint folders sit side by side, named by run and step:
//! - MultiBERTs: `multiberts-seed_0-step_20k` is run `multiberts-seed_0` at step 20,000;
//! - OLMo: `step1000-tokens4B` (step 1000, 4e9 tokens), `step1000-unsharded`, and OLMo-2's
//!   `stage1-step1000-tokens5B` and `stage2-ingredient2-step1000-tokens10B` (runs `stage1` and
//!   `stage2-ingredient2`: stages and ingredients restart the step count, so they are separate runs);
//! - the general rule: the run is the name with its step part (and token count, and OLMo's
//!   `unsharded` marker) removed; folders whose remaining names are equal form one run.
//!
//! Numbers take an optional multiplier suffix, case-insensitive: `k` = 1e3, `M` = 1e6, `B` = 1e9, and for
//! token counts also `T` = 1e12; a decimal mantissa is allowed when the result is whole (`step_1.5k` = 1500).

use std::sync::LazyLock;

use regex::Regex;

/// A step token: `step1000`, `step_20k`, `global_step-7`. The character after it is checked separately.
static STEP_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(?:^|[^a-z0-9])((?:global_)?step[-_=]?(\d+(?:\.\d+)?[kmb]?))").unwrap());
/// A token count: `tokens4B`, `tokens_1.5T`.
static TOKENS_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(?:^|[^a-z0-9])(tokens?[-_=]?(\d+(?:\.\d+)?[kmbt]?))").unwrap());
/// OLMo's marker of a checkpoint gathered from its shards.
static UNSHARDED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)(?:^|[^a-z0-9])(unsharded)").unwrap());

/// Separators trimmed from the pieces of a name once its step and token parts are removed.
const SEPARATORS: &[char] = &['-', '_', '.', '=', ' '];

/// What a name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepName {
    /// Training step.
    pub step: u64,
    /// Training tokens seen, when the name has a `tokens` part.
    pub tokens: Option<u64>,
    /// The run identifier: the name without its step, token and `unsharded` parts; `None` when nothing is left.
    pub run: Option<String>,
    /// True when the name has OLMo's `tokens` or `unsharded` parts.
    pub olmo: bool,
}

/// Reads a name. `Ok(None)`: the name carries no step. `Err`: it carries one, but not unambiguously
/// (two step parts, a step or token count that is not a whole number, or one too large); the reason says which.
pub fn parse(name: &str) -> Result<Option<StepName>, String> {
    let steps = tokens_of(&STEP_TOKEN, name);
    let step_part = match steps.as_slice() {
        [] => return Ok(None),
        [one] => one,
        many => {
            let parts: Vec<&str> = many.iter().map(|t| t.text).collect();
            return Err(format!("`{name}` has {} step parts ({})", many.len(), parts.join(", ")));
        }
    };
    let step = step_part.value(Unit::Steps)?;
    let token_parts = tokens_of(&TOKENS_TOKEN, name);
    let tokens = match token_parts.as_slice() {
        [] => None,
        [one] => Some(one.value(Unit::Tokens)?),
        _ => return Err(format!("`{name}` has more than one token count")),
    };
    let unsharded = tokens_of(&UNSHARDED, name);
    let mut removed: Vec<(usize, usize)> = steps
        .iter()
        .chain(&token_parts)
        .chain(&unsharded)
        .map(|t| (t.start, t.start + t.text.len()))
        .collect();
    removed.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for (start, end) in removed {
        pieces.push(&name[from..start]);
        from = end;
    }
    pieces.push(&name[from..]);
    let run: Vec<&str> = pieces
        .iter()
        .map(|p| p.trim_matches(SEPARATORS))
        .filter(|p| !p.is_empty())
        .collect();
    Ok(Some(StepName {
        step,
        tokens,
        run: (!run.is_empty()).then(|| run.join("-")),
        olmo: !token_parts.is_empty() || !unsharded.is_empty(),
    }))
}

/// Reads a step count with an optional multiplier, as in names: `1500`, `20k`, `1.5k`, `2M`.
pub fn parse_steps(text: &str) -> Result<u64, String> {
    count(text, Unit::Steps)
}

/// What a number counts, for the multipliers it accepts.
#[derive(Clone, Copy)]
enum Unit {
    Steps,
    Tokens,
}

/// One part of a name matched by a token regex: its text, position and number.
struct Part<'a> {
    text: &'a str,
    start: usize,
    number: &'a str,
}

/// The parts of `name` that `re` matches and that end at a word boundary (not followed by a letter or digit).
fn tokens_of<'a>(re: &Regex, name: &'a str) -> Vec<Part<'a>> {
    re.captures_iter(name)
        .filter_map(|caps| {
            let part = caps.get(1)?;
            let next = name[part.end()..].chars().next();
            if next.is_some_and(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            Some(Part {
                text: part.as_str(),
                start: part.start(),
                number: caps.get(2).map_or("", |m| m.as_str()),
            })
        })
        .collect()
}

impl Part<'_> {
    /// The whole number this part stands for, multiplier applied; errors quote the part.
    fn value(&self, unit: Unit) -> Result<u64, String> {
        count(self.number, unit).map_err(|reason| format!("`{}`: {reason}", self.text))
    }
}

/// A whole count written as digits with an optional decimal fraction and multiplier suffix.
fn count(text: &str, unit: Unit) -> Result<u64, String> {
    let what = match unit {
        Unit::Steps => "steps",
        Unit::Tokens => "tokens",
    };
    let (number, suffix) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], Some(c.to_ascii_lowercase())),
        _ => (text, None),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || number.ends_with('.') {
        return Err(format!("`{text}` is not a number of {what}"));
    }
    let multiplier: u128 = match (suffix, unit) {
        (None, _) => 1,
        (Some('k'), _) => 1_000,
        (Some('m'), _) => 1_000_000,
        (Some('b'), _) => 1_000_000_000,
        (Some('t'), Unit::Tokens) => 1_000_000_000_000,
        (Some(other), _) => return Err(format!("unknown multiplier `{other}` (k, M, B)")),
    };
    let too_large = || format!("too many {what}");
    let scale = u32::try_from(fraction.len())
        .ok()
        .and_then(|n| 10u128.checked_pow(n))
        .ok_or_else(too_large)?;
    let mantissa: u128 = format!("{whole}{fraction}").parse().map_err(|_| too_large())?;
    let scaled = mantissa.checked_mul(multiplier).ok_or_else(too_large)?;
    if scaled % scale != 0 {
        return Err(format!("not a whole number of {what}"));
    }
    u64::try_from(scaled / scale).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(step: u64, tokens: Option<u64>, run: Option<&str>, olmo: bool) -> Option<StepName> {
        Some(StepName {
            step,
            tokens,
            run: run.map(String::from),
            olmo,
        })
    }

    #[test]
    fn suite_names() {
        let cases = [
            (
                "multiberts-seed_0-step_20k",
                name(20_000, None, Some("multiberts-seed_0"), false),
            ),
            (
                "multiberts-seed_4-step_2000k",
                name(2_000_000, None, Some("multiberts-seed_4"), false),
            ),
            (
                "multiberts-seed_1-step_0k",
                name(0, None, Some("multiberts-seed_1"), false),
            ),
            ("step1000-tokens4B", name(1000, Some(4_000_000_000), None, true)),
            (
                "step738020-tokens3095B",
                name(738_020, Some(3_095_000_000_000), None, true),
            ),
            ("step1000-unsharded", name(1000, None, None, true)),
            (
                "stage1-step1000-tokens5B",
                name(1000, Some(5_000_000_000), Some("stage1"), true),
            ),
            (
                "stage2-ingredient2-step1000-tokens10B",
                name(1000, Some(10_000_000_000), Some("stage2-ingredient2"), true),
            ),
            ("seed0_step100", name(100, None, Some("seed0"), false)),
            ("run3-global_step7-final", name(7, None, Some("run3-final"), false)),
            ("step_1.5k", name(1500, None, None, false)),
            ("step2M", name(2_000_000, None, None, false)),
            ("step1000-tokens1.5T", name(1000, Some(1_500_000_000_000), None, true)),
            ("step1500", name(1500, None, None, false)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn step_counts_with_multipliers() {
        for (text, want) in [
            ("0", Ok(0)),
            ("20k", Ok(20_000)),
            ("1.5K", Ok(1500)),
            ("2M", Ok(2_000_000)),
            ("3b", Ok(3_000_000_000)),
        ] {
            assert_eq!(parse_steps(text), want, "{text}");
        }
        for (text, reason) in [
            ("1T", "unknown multiplier `t`"),
            ("", "not a number"),
            ("k", "not a number"),
            ("1.2.3", "not a number"),
            ("1.", "not a number"),
            ("-5", "not a number"),
            ("0.0001k", "not a whole number"),
        ] {
            let err = parse_steps(text).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn names_without_a_step() {
        for text in [
            "main",
            "seed3",
            "steps",
            "stepsize_0.1",
            "warmup-steps100",
            "run_step",
            "step100x",
        ] {
            assert_eq!(parse(text), Ok(None), "{text}");
        }
    }

    #[test]
    fn ambiguous_names_say_why() {
        for (text, reason) in [
            ("seed1-step100-step200", "2 step parts (step100, step200)"),
            ("step_1.2345k", "`step_1.2345k`: not a whole number of steps"),
            ("step1-tokens0.5", "`tokens0.5`: not a whole number of tokens"),
            ("step1-tokens4B-tokens5B", "more than one token count"),
            ("step99999999999999999999", "too many steps"),
            ("step20000000000B", "too many steps"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(err.contains('`'), "{text}: the message quotes the name: {err}");
        }
    }
}
