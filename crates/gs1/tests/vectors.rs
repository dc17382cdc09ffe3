//! Runs every case of the two third-party vector files in `tests/data/` against the crate: GS1's
//! syntax-engine vectors (585 cases in sections, format in the file's header) and biip's vectors
//! (167 cases in parametrised tests). Each section or test has one `check_*` function; a case
//! that fails is collected with its source line, and the test fails listing them all. The counts
//! are asserted too, so a case that is silently skipped fails the test.

use medledger_gs1::*;
use serde_json::Value;

const ENGINE_VECTORS: &str = include_str!("data/gs1-syntax-engine-vectors.txt");
const BIIP_VECTORS: &str = include_str!("data/biip-gs1-test-vectors.json");

/// biip places two-digit years relative to the current year; its cases were chosen to give the
/// same dates for any current year from 1953 to 2052 (those that would not are left out of the
/// vector file), so a fixed reference year stands in for the clock this crate never reads.
const REFERENCE_YEAR: i32 = 2026;

/// Decodes the vector file's escapes: "\\" is one backslash, "\xHH" one raw byte.
fn unescape_field(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(byte) = s
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

struct EngineCase {
    section: String,
    options: Vec<String>,
    input: Vec<u8>,
    expected: Vec<u8>,
    source: String,
}

impl EngineCase {
    fn input(&self) -> String {
        String::from_utf8(self.input.clone()).expect("an ascii input")
    }

    fn expected(&self) -> String {
        String::from_utf8(self.expected.clone()).expect("an ascii expectation")
    }

    fn must_fail(&self) -> bool {
        self.expected == b"!ERR"
    }

    /// The options the section header lists, on top of `base`.
    fn options(&self, base: Options) -> Options {
        let mut o = base;
        for opt in &self.options {
            match opt.as_str() {
                "PermitZeroSuppressedGTINinDLuris" => o.permit_zero_suppressed_gtin_in_dl_uris = true,
                "permitConvenienceAlphas" => o.permit_convenience_alphas = true,
                "PermitUnknownAIs" => o.permit_unknown_ais = true,
                "validation:vUNKNOWN_AI_NOT_DL_ATTR=off" => o.unknown_ai_not_dl_attr = false,
                "validation:vREQUISITE_AIS=off" => o.check_requisites = false,
                s if s.starts_with("stem=") => {}
                other => panic!("{}: unknown option {other:?}", self.source),
            }
        }
        o
    }

    fn stem(&self) -> String {
        let stem = self
            .options
            .iter()
            .find_map(|o| o.strip_prefix("stem="))
            .unwrap_or_else(|| panic!("{}: no stem", self.source));
        match stem {
            "<default: https://id.gs1.org>" => CANONICAL_STEM.to_owned(),
            "<empty string>" => String::new(),
            s => s.to_owned(),
        }
    }
}

fn engine_cases() -> Vec<EngineCase> {
    let mut cases = Vec::new();
    let mut section = String::new();
    let mut options = Vec::new();
    for line in ENGINE_VECTORS.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let mut parts = header.split(" | ");
            section = parts.next().unwrap_or_default().to_owned();
            options = parts.map(str::to_owned).collect();
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "malformed vector line {line:?}");
        cases.push(EngineCase {
            section: section.clone(),
            options: options.clone(),
            input: unescape_field(fields[0]),
            expected: unescape_field(fields[1]),
            source: fields[2].to_owned(),
        });
    }
    cases
}

type Outcome = Result<(), String>;

/// Compares an operation's result with an expectation that is either "!ERR" or a value.
fn expect_value(case: &EngineCase, got: Result<String, Gs1Error>) -> Outcome {
    match (case.must_fail(), got) {
        (true, Err(_)) => Ok(()),
        (true, Ok(v)) => Err(format!("expected an error, got {v:?}")),
        (false, Ok(v)) if v == case.expected() => Ok(()),
        (false, Ok(v)) => Err(format!("expected {:?}, got {v:?}", case.expected())),
        (false, Err(e)) => Err(format!("expected {:?}, got error: {e}", case.expected())),
    }
}

/// Compares acceptance with "OK" or "!ERR".
fn expect_ok(case: &EngineCase, got: Result<(), Gs1Error>) -> Outcome {
    let want_ok = match case.expected().as_str() {
        "OK" => true,
        "!ERR" => false,
        other => return Err(format!("unexpected expectation {other:?}")),
    };
    match (want_ok, got) {
        (true, Ok(())) | (false, Err(_)) => Ok(()),
        (true, Err(e)) => Err(format!("expected OK, got error: {e}")),
        (false, Ok(())) => Err("expected an error, got OK".to_owned()),
    }
}

fn check_dl_uri_to_element_string(c: &EngineCase) -> Outcome {
    let got = parse_digital_link_with(&c.input(), &c.options(Options::default()));
    expect_value(c, got.map(|es| es.to_caret_notation()))
}

fn check_dl_uri_accepts(c: &EngineCase) -> Outcome {
    let got = parse_digital_link_with(&c.input(), &c.options(Options::default()));
    expect_ok(c, got.map(|_| ()))
}

fn check_uri_unescape(c: &EngineCase, query: bool) -> Outcome {
    match (c.must_fail(), uri_unescape(&c.input(), query)) {
        (true, Err(_)) => Ok(()),
        (false, Ok(v)) if v == c.expected => Ok(()),
        (_, got) => Err(format!("expected {:?}, got {got:?}", c.expected)),
    }
}

fn check_uri_escape(c: &EngineCase, query: bool) -> Outcome {
    expect_value(c, Ok(uri_escape(&c.input(), query)))
}

fn check_dl_path_ai_sequence_valid(c: &EngineCase) -> Outcome {
    let input = c.input();
    let ais: Vec<&str> = input.split(' ').collect();
    match (c.expected().as_str(), is_valid_dl_path(&ais)) {
        ("VALID", true) => Ok(()),
        (want, got) => Err(format!("expected {want}, is_valid_dl_path said {got}")),
    }
}

fn check_bracketed_to_dl_uri(c: &EngineCase) -> Outcome {
    let opts = c.options(Options::default());
    let got = parse_bracketed_with(&c.input(), &opts)
        .and_then(|es| es.to_digital_link_with(&c.stem(), &opts));
    expect_value(c, got)
}

fn check_dl_uri_to_dl_uri(c: &EngineCase) -> Outcome {
    let got = DigitalLink::parse_with(&c.input(), &c.options(Options::default()))
        .and_then(|dl| dl.to_uri(&c.stem()));
    expect_value(c, got)
}

fn check_element_string_to_dl_uri(c: &EngineCase) -> Outcome {
    let opts = c.options(Options::default());
    let got = parse_caret_notation_with(&c.input(), &opts)
        .and_then(|es| es.to_digital_link_with(&c.stem(), &opts));
    expect_value(c, got)
}

fn check_ai_length_by_prefix(c: &EngineCase) -> Outcome {
    let got = ai_length_by_prefix(&c.input()).map(|l| l.to_string());
    match got {
        Some(l) if l == c.expected() => Ok(()),
        other => Err(format!("expected {}, got {other:?}", c.expected())),
    }
}

// The engine's bracketed, "^" and linter tests exercise its parser alone, which checks each value
// but none of the rules between AIs: "(10)12345" passes there although (10) requires (01).

fn check_bracketed_to_element_string(c: &EngineCase) -> Outcome {
    let got = parse_bracketed_with(&c.input(), &c.options(Options::syntax_only()));
    expect_value(c, got.map(|es| es.to_caret_notation()))
}

fn check_bracketed_accepts(c: &EngineCase) -> Outcome {
    let got = parse_bracketed_with(&c.input(), &c.options(Options::syntax_only()));
    expect_ok(c, got.map(|_| ()))
}

fn check_element_string_check(c: &EngineCase) -> Outcome {
    let got = parse_caret_notation_with(&c.input(), &c.options(Options::syntax_only()));
    expect_ok(c, got.map(|_| ()))
}

fn check_linter_result(c: &EngineCase) -> Outcome {
    let got = match parse_bracketed_with(&c.input(), &c.options(Options::syntax_only())) {
        Ok(_) => "GS1_LINTER_OK".to_owned(),
        Err(Gs1Error::Lint { lint, .. }) => lint.code().to_owned(),
        Err(e) => return Err(format!("failed for a reason other than a linter: {e}")),
    };
    if LintError::from_code(&c.expected()).is_none() && c.expected() != "GS1_LINTER_OK" {
        return Err(format!("unknown linter code {}", c.expected()));
    }
    if got == c.expected() {
        Ok(())
    } else {
        Err(format!("expected {}, got {got}", c.expected()))
    }
}

fn check_error_markup(c: &EngineCase) -> Outcome {
    match parse_bracketed_with(&c.input(), &c.options(Options::default())) {
        Err(Gs1Error::Lint { markup, .. }) if markup == c.expected() => Ok(()),
        other => Err(format!("expected markup {:?}, got {other:?}", c.expected())),
    }
}

/// One rule between AIs, alone: the data must parse, then pass or fail that rule.
fn check_ai_validation(c: &EngineCase, rule: &str) -> Outcome {
    let es = parse_bracketed_with(&c.input(), &c.options(Options::syntax_only()))
        .map_err(|e| format!("does not parse: {e}"))?;
    let mut only = Options::syntax_only();
    match rule {
        "validateAIrepeats" => only.check_repeats = true,
        "validateAImutex" => only.check_exclusions = true,
        "validateAIrequisites" => only.check_requisites = true,
        "validateDigSigRequiresSerialisedKey" => only.check_digsig_serial_key = true,
        other => return Err(format!("unknown rule {other}")),
    }
    let got = validate_associations(&es.ais, &only);
    // The error must come from the rule under test.
    if let Err(e) = &got {
        let right_rule = match rule {
            "validateAIrepeats" => matches!(e, Gs1Error::Repeated { .. }),
            "validateAImutex" => matches!(e, Gs1Error::Excluded { .. }),
            "validateAIrequisites" => matches!(e, Gs1Error::Requires { .. }),
            _ => matches!(e, Gs1Error::DigSigUnserialised { .. }),
        };
        if !right_rule {
            return Err(format!("failed by another rule: {e}"));
        }
    }
    expect_ok(c, got)
}

#[test]
fn gs1_syntax_engine_vectors() {
    let cases = engine_cases();
    assert_eq!(cases.len(), 585, "the vector file holds 585 cases");
    let mut failures = Vec::new();
    let mut per_section = std::collections::BTreeMap::<&str, usize>::new();
    for c in &cases {
        let outcome = match c.section.as_str() {
            "dl_uri_to_element_string" => check_dl_uri_to_element_string(c),
            "dl_uri_accepts" => check_dl_uri_accepts(c),
            "uri_unescape_path" => check_uri_unescape(c, false),
            "uri_unescape_query" => check_uri_unescape(c, true),
            "uri_escape_path" => check_uri_escape(c, false),
            "uri_escape_query" => check_uri_escape(c, true),
            "dl_path_ai_sequence_valid" => check_dl_path_ai_sequence_valid(c),
            "bracketed_to_dl_uri" => check_bracketed_to_dl_uri(c),
            "dl_uri_to_dl_uri" => check_dl_uri_to_dl_uri(c),
            "element_string_to_dl_uri" => check_element_string_to_dl_uri(c),
            "ai_length_by_prefix" => check_ai_length_by_prefix(c),
            "bracketed_to_element_string" => check_bracketed_to_element_string(c),
            "bracketed_accepts" => check_bracketed_accepts(c),
            "element_string_check" => check_element_string_check(c),
            "linter_result" => check_linter_result(c),
            "error_markup" => check_error_markup(c),
            s if s.starts_with("ai_validation:") => check_ai_validation(c, &s["ai_validation:".len()..]),
            s => Err(format!("no check for section {s}")),
        };
        *per_section.entry(c.section.as_str()).or_default() += 1;
        if let Err(why) = outcome {
            failures.push(format!(
                "{} [{}] {:?}: {why}",
                c.source,
                c.section,
                String::from_utf8_lossy(&c.input)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(per_section.len(), 20, "sections: {per_section:?}");
}
