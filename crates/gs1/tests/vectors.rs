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
                "PermitZeroSuppressedGTINinDLuris" => {
                    o.permit_zero_suppressed_gtin_in_dl_uris = true
                }
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
            s if s.starts_with("ai_validation:") => {
                check_ai_validation(c, &s["ai_validation:".len()..])
            }
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

// ---------------------------------------------------------------------------------------------
// biip

/// biip does not enforce the dictionary's `req=` rules (it reads "(10)0329" alone), and reads
/// GTIN-12 and GTIN-13 in Digital Link paths.
fn biip_options() -> Options {
    Options {
        check_requisites: false,
        permit_zero_suppressed_gtin_in_dl_uris: true,
        ..Options::default()
    }
}

/// The options a case's `config` asks for.
fn biip_case_options(case: &Value) -> Options {
    let mut o = biip_options();
    if case["config"]["gs1_element_strings_verify_date"] == Value::Bool(false) {
        o.lint_dates = false;
    }
    o
}

/// GS1's table of company prefix lengths is not shipped with the crate (it is large and changes
/// monthly; the caller loads it). These are the lengths biip's copy of that table gives for the
/// numbers in its vectors, keyed here by the company prefixes themselves.
fn gcp_table() -> GcpLengthTable {
    GcpLengthTable::from_entries([
        ("703206", 6),
        ("73400306", 8),
        ("0614141", 7),
        ("1234567890", 10),
    ])
}

/// Cases whose expectation this crate cannot meet: (test, the case's value or parameter, why).
/// They still run, through [`check_deviation`], which checks the answer the crate gives instead;
/// the test fails if a listed case is not found in the file.
const BIIP_DEVIATIONS: &[(&str, &str, &str)] = &[
    (
        "test_get_element_string_by_data_title",
        "CERT # 1",
        "titles come from GS1's syntax dictionary, where (7230) is \"CERT # 1\"; biip's own AI \
         table numbers the certification references from 0, so its \"CERT # 1\" is (7231)",
    ),
    (
        "test_extract",
        "800307071324001022085952",
        "the GTIN-13 inside this GRAI, 7071324001022, has a wrong check digit (1 is right); the \
         dictionary runs the csum linter on it and this crate refuses it, biip does not check it",
    ),
    (
        "test_parse",
        "800307071324001022085952",
        "the same GRAI as above, read as a message",
    ),
];

fn deviation(test: &str, case: &Value) -> Option<&'static str> {
    let key = case["data_title"].as_str().or(case["value"].as_str())?;
    BIIP_DEVIATIONS
        .iter()
        .find(|(t, k, _)| *t == test && *k == key)
        .map(|(_, k, _)| *k)
}

/// What the crate does instead for a listed deviation.
fn check_deviation(test: &str, key: &str, case: &Value) -> Outcome {
    match key {
        "CERT # 1" => {
            let es = parse_unbracketed_with(s(&case["value"])?, &biip_options())
                .map_err(|e| e.to_string())?;
            same(
                "value",
                es.values_by_title(key).first().copied(),
                Some("EM123"),
            )
        }
        _ => {
            // Refused for the check digit, yet the structure biip reports is the structure the
            // dictionary gives.
            match parse_unbracketed_with(key, &biip_options()) {
                Err(Gs1Error::Lint {
                    lint: LintError::IncorrectCheckDigit,
                    ..
                }) => {}
                other => return Err(format!("expected a check digit error, got {other:?}")),
            }
            let expected = &case["expected"];
            let element = match test {
                "test_parse" => &expected["element_strings"][0],
                _ => expected,
            };
            let (ai, value) = key.split_at(4);
            let groups = strings(&element["pattern_groups"])?;
            same(
                "components",
                components(ai, value).map_err(|e| e.to_string())?,
                groups,
            )
        }
    }
}

fn s(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, got {v}"))
}

fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Outcome {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: expected {want:?}, got {got:?}"))
    }
}

/// Reads one element string "AI + value" as biip's `GS1ElementString.extract` does.
fn single_element(text: &str, opts: &Options) -> Result<(String, String), String> {
    let es = parse_unbracketed_with(text, opts).map_err(|e| e.to_string())?;
    match es.ais.as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("expected one element string, got {other:?}")),
    }
}

/// An element string built from a list of `{"$element_string": s}` or element objects.
fn element_list(v: &Value) -> Result<ElementString, String> {
    let mut ais = Vec::new();
    for item in v.as_array().ok_or("expected a list")? {
        if let Some(text) = item.get("$element_string") {
            ais.push(single_element(s(text)?, &biip_options())?);
        } else {
            ais.push((s(&item["ai"])?.to_owned(), s(&item["value"])?.to_owned()));
        }
    }
    Ok(ElementString { ais })
}

fn check_prefix(got: Option<Gs1Prefix>, want: &Value) -> Outcome {
    let got = got.ok_or("no gs1 prefix")?;
    same("prefix", got.value.as_str(), s(&want["value"])?)?;
    same("prefix usage", got.usage, s(&want["usage"])?)
}

fn check_digit_field(got: u8, want: &Value) -> Outcome {
    same("check digit", Some(u64::from(got)), want.as_u64())
}

fn check_gtin(value: &str, want: &Value) -> Outcome {
    let gtin = Gtin::parse(value).map_err(|e| e.to_string())?;
    let table = gcp_table();
    same("gtin", gtin.as_str(), s(&want["value"])?)?;
    let format = match gtin.format() {
        GtinFormat::Gtin8 => "GTIN_8",
        GtinFormat::Gtin12 => "GTIN_12",
        GtinFormat::Gtin13 => "GTIN_13",
        GtinFormat::Gtin14 => "GTIN_14",
    };
    same("format", format, s(&want["format"])?)?;
    check_prefix(gtin.gs1_prefix(), &want["prefix"])?;
    same(
        "company prefix",
        gtin.company_prefix(&table),
        Some(s(&want["company_prefix"]["value"])?),
    )?;
    same(
        "item reference",
        gtin.item_reference(&table),
        Some(s(&want["item_reference"])?),
    )?;
    same("payload", gtin.payload(), s(&want["payload"])?)?;
    check_digit_field(gtin.check_digit(), &want["check_digit"])?;
    if let Some(level) = want.get("packaging_level") {
        same(
            "packaging level",
            gtin.packaging_level().map(u64::from),
            level.as_u64(),
        )?;
    }
    Ok(())
}

fn check_sscc(value: &str, want: &Value) -> Outcome {
    let sscc = Sscc::parse(value).map_err(|e| e.to_string())?;
    same("sscc", sscc.as_str(), s(&want["value"])?)?;
    check_prefix(sscc.gs1_prefix(), &want["prefix"])?;
    same(
        "company prefix",
        sscc.company_prefix(&gcp_table()),
        Some(s(&want["company_prefix"]["value"])?),
    )?;
    same(
        "extension digit",
        Some(u64::from(sscc.extension_digit())),
        want["extension_digit"].as_u64(),
    )?;
    same("payload", sscc.payload(), s(&want["payload"])?)?;
    check_digit_field(sscc.check_digit(), &want["check_digit"])
}

fn check_gln(value: &str, want: &Value) -> Outcome {
    let gln = Gln::parse(value).map_err(|e| e.to_string())?;
    same("gln", gln.as_str(), s(&want["value"])?)?;
    check_prefix(gln.gs1_prefix(), &want["prefix"])?;
    same(
        "company prefix",
        gln.company_prefix(&gcp_table()),
        Some(s(&want["company_prefix"]["value"])?),
    )?;
    same("payload", gln.payload(), s(&want["payload"])?)?;
    check_digit_field(gln.check_digit(), &want["check_digit"])
}

/// The date biip shows for a value: none when the AI is no date or the date does not decode.
fn date_of(ai: &str, value: &str) -> Option<Gs1DateTime> {
    decode_date(ai, value, REFERENCE_YEAR).ok().flatten()
}

/// Checks an (AI, value) pair against a biip `GS1ElementString` object: AI, value, the value's
/// components, and the GTIN, SSCC, GLN and date read from it where biip shows them.
fn check_element(ai: &str, value: &str, want: &Value) -> Outcome {
    same("ai", ai, s(&want["ai"])?)?;
    same("value", value, s(&want["value"])?)?;
    let groups: Vec<&str> = want["pattern_groups"]
        .as_array()
        .ok_or("no pattern groups")?
        .iter()
        .map(s)
        .collect::<Result<_, _>>()?;
    same(
        "components",
        components(ai, value).map_err(|e| e.to_string())?,
        groups,
    )?;
    for (key, check) in [
        ("gtin", check_gtin as fn(&str, &Value) -> Outcome),
        ("sscc", check_sscc),
        ("gln", check_gln),
    ] {
        match want.get(key) {
            Some(Value::Null) | None => {
                // biip shows no such key for this AI; this crate must not read one either.
                let reads = match key {
                    "gtin" => matches!(ai, "01" | "02" | "03"),
                    "sscc" => ai == "00",
                    _ => ai.len() == 3 && ai.starts_with("41"),
                };
                if reads && want.get(format!("{key}_error")).is_none_or(Value::is_null) {
                    return Err(format!("biip reads no {key} from ({ai}), this crate would"));
                }
            }
            Some(obj) => check(value, obj).map_err(|e| format!("{key}: {e}"))?,
        }
    }
    if let Some(date) = want.get("date") {
        let got = date_of(ai, value).map(|d| Gs1DateTime { time: None, ..d }.to_string());
        same("date", got.as_deref(), date.as_str())?;
    }
    Ok(())
}

fn check_elements(es: &ElementString, want: &Value) -> Outcome {
    let want = want.as_array().ok_or("no element strings")?;
    same("number of element strings", es.ais.len(), want.len())?;
    for ((ai, value), w) in es.ais.iter().zip(want) {
        check_element(ai, value, w)?;
    }
    Ok(())
}

fn strings(v: &Value) -> Result<Vec<&str>, String> {
    v.as_array()
        .ok_or("expected a list")?
        .iter()
        .map(s)
        .collect()
}

fn check_biip_case(file: &str, test: &str, case: &Value) -> Outcome {
    let opts = biip_case_options(case);
    let value = &case["value"];
    let expected = &case["expected"];
    match (file, test) {
        (_, "test_extract") | (_, "test_extract_with_nested_error") if file.contains("element") => {
            let text = s(value)?;
            if test == "test_extract" {
                let (ai, v) = single_element(text, &opts)?;
                check_element(&ai, &v, expected)?;
                if let Some(dt) = expected.get("datetime") {
                    let got = date_of(&ai, &v).filter(|d| d.time.is_some());
                    same(
                        "datetime",
                        got.map(|d| d.to_string()).as_deref(),
                        dt.as_str(),
                    )?;
                }
                return Ok(());
            }
            // The embedded key has a bad check digit: this crate refuses the element string
            // (GS1's csum linter) and the key, and the right check digit is the one biip names.
            let ai = s(&expected["ai"])?;
            match parse_unbracketed_with(text, &opts) {
                Err(Gs1Error::Lint { ai: a, lint, .. })
                    if a == ai && lint == LintError::IncorrectCheckDigit => {}
                other => return Err(format!("expected a check digit error, got {other:?}")),
            }
            let key_value = s(&expected["value"])?;
            let (key, message) = ["gtin", "sscc", "gln"]
                .iter()
                .find_map(|k| Some((*k, expected.get(format!("{k}_error"))?.as_str()?)))
                .ok_or("no key error")?;
            let refused = match key {
                "gtin" => Gtin::parse(key_value).err(),
                "sscc" => Sscc::parse(key_value).err(),
                _ => Gln::parse(key_value).err(),
            };
            if !matches!(refused, Some(Gs1Error::CheckDigit { .. })) {
                return Err(format!("{key} {key_value} not refused for its check digit"));
            }
            let want_digit = message
                .split("Expected ")
                .nth(1)
                .and_then(|r| r.bytes().next())
                .ok_or("no expected digit in the message")?;
            let body = &key_value.as_bytes()[..key_value.len() - 1];
            same("check digit", check_digit(body), want_digit)
        }
        (_, "test_extract_fails_when_not_matching_pattern") => {
            let ai = s(&case["ai_code"])?;
            match parse_unbracketed_with(s(&case["bad_value"])?, &opts) {
                Err(Gs1Error::TooShort { ai: a } | Gs1Error::TooLong { ai: a }) if a == ai => {
                    Ok(())
                }
                other => Err(format!("expected a length error for ({ai}), got {other:?}")),
            }
        }
        (_, "test_extract_date_and_datetime") => {
            let (ai, v) = single_element(s(value)?, &opts)?;
            let got = date_of(&ai, &v).ok_or("no date")?;
            same(
                "date",
                Gs1DateTime { time: None, ..got }.to_string().as_str(),
                s(&case["expected_date"])?,
            )?;
            let datetime = got.time.map(|_| got.to_string());
            same(
                "datetime",
                datetime.as_deref(),
                case["expected_datetime"].as_str(),
            )
        }
        (_, "test_extract_fails_with_invalid_date") => {
            let ai = s(&case["ai_code"])?;
            let bad = s(&case["bad_value"])?;
            match parse_unbracketed_with(&format!("{ai}{bad}"), &opts) {
                Err(Gs1Error::Lint {
                    lint: LintError::IllegalDay | LintError::IllegalMonth,
                    ..
                }) => {}
                other => return Err(format!("expected a date linter error, got {other:?}")),
            }
            match expand_yymmdd(bad, REFERENCE_YEAR) {
                Err(Gs1Error::Date { .. }) => Ok(()),
                other => Err(format!("expand_yymmdd accepted {bad}: {other:?}")),
            }
        }
        (_, "test_extract_handles_zero_day_as_last_day_of_month") => {
            let (ai, v) = single_element(s(value)?, &opts)?;
            let got = date_of(&ai, &v).map(|d| d.to_string());
            same("date", got.as_deref(), expected.as_str())
        }
        (_, "test_extract_variable_measures")
        | (_, "test_extract_amount_payable")
        | (_, "test_extract_percentage_discount") => {
            let (ai, v) = single_element(s(value)?, &opts)?;
            let q = decode_quantity(&ai, &v)
                .map_err(|e| e.to_string())?
                .ok_or("no quantity")?;
            same("currency", q.currency, None)?;
            same("quantity", q.value.to_string().as_str(), s(expected)?)
        }
        (_, "test_extract_amount_payable_and_currency") => {
            let (ai, v) = single_element(s(value)?, &opts)?;
            let q = decode_quantity(&ai, &v)
                .map_err(|e| e.to_string())?
                .ok_or("no quantity")?;
            same("currency", q.currency, case["expected_currency"].as_str())?;
            same(
                "amount",
                q.value.to_string().as_str(),
                s(&case["expected_decimal"])?,
            )
        }
        (_, "test_as_hri") if file.contains("element") => {
            let (ai, v) = single_element(s(value)?, &opts)?;
            let es = ElementString { ais: vec![(ai, v)] };
            same("hri", es.to_bracketed().as_str(), s(expected)?)
        }
        (_, "test_list_filter_element_strings_by_ai") => {
            let es = element_list(value)?;
            same(
                "values",
                es.values_with_prefix(s(&case["ai"])?),
                strings(expected)?,
            )
        }
        (_, "test_list_filter_element_strings_by_data_title") => {
            let es = element_list(value)?;
            same(
                "values",
                es.values_by_title(s(&case["data_title"])?),
                strings(expected)?,
            )
        }
        (_, "test_list_get_element_strings_by_ai") => {
            let es = element_list(value)?;
            let got = es.values_with_prefix(s(&case["ai"])?).first().copied();
            same("value", got, expected.as_str())
        }
        (_, "test_list_get_element_strings_by_data_title") => {
            let es = element_list(value)?;
            let got = es.values_by_title(s(&case["data_title"])?).first().copied();
            same("value", got, expected.as_str())
        }

        // Digital Link URIs.
        (f, "test_parse") | (f, "test_parse_with_invalid_element_values")
            if f.contains("digital_link") =>
        {
            let dl = DigitalLink::parse_with(s(value)?, &opts).map_err(|e| e.to_string())?;
            same("uri", s(value)?, s(&expected["value"])?)?;
            check_elements(&dl.elements, &expected["element_strings"])
        }
        (_, "test_parse_error") => {
            let err = match DigitalLink::parse_with(s(value)?, &opts) {
                Ok(dl) => return Err(format!("expected an error, got {dl:?}")),
                Err(e) => e,
            };
            let pattern = s(&case["error"])?;
            // biip's messages differ from this crate's; the kind of error must match.
            if let Some(got_ai) = pattern
                .split("got '")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                && pattern.contains("qualifier")
            {
                match &err {
                    Gs1Error::KeyQualifiers(path) if path.split(' ').any(|a| a == got_ai) => Ok(()),
                    other => Err(format!("expected a bad qualifier {got_ai}, got {other:?}")),
                }
            } else if pattern.contains("Expected URI") || pattern.contains("scheme") {
                same("error", matches!(err, Gs1Error::Uri(_)), true)
            } else {
                same("error", err, Gs1Error::NoPrimaryKey)
            }
        }
        (f, "test_from_element_strings") if f.contains("digital_link") => {
            let es = element_list(value)?;
            let uri = es
                .to_digital_link(CANONICAL_STEM)
                .map_err(|e| e.to_string())?;
            same("uri", uri.as_str(), s(&expected["value"])?)?;
            check_elements(&es, &expected["element_strings"])
        }
        (_, "test_as_uri") => {
            let dl = DigitalLink::parse_with(s(value)?, &opts).map_err(|e| e.to_string())?;
            let domain = case["domain"].as_str().unwrap_or("id.gs1.org");
            let stem = match case["prefix"].as_str() {
                Some(prefix) => format!("https://{domain}/{prefix}"),
                None => format!("https://{domain}"),
            };
            same(
                "uri",
                dl.to_uri(&stem).map_err(|e| e.to_string())?.as_str(),
                s(expected)?,
            )
        }
        (_, "test_as_canonical_uri") => {
            let es = parse_digital_link_with(s(value)?, &opts).map_err(|e| e.to_string())?;
            let uri = es.to_canonical_digital_link().map_err(|e| e.to_string())?;
            same("uri", uri.as_str(), s(expected)?)
        }
        (_, "test_as_gs1_message") => {
            let es = parse_digital_link_with(s(value)?, &opts).map_err(|e| e.to_string())?;
            same("hri", es.to_bracketed().as_str(), s(expected)?)
        }
        (f, test) if f.contains("digital_link") || f.contains("messages") => {
            check_message_case(file, test, case, &opts)
        }
        _ => Err(format!("no check for {file} {test}")),
    }
}

/// The parsed message of `value`: a Digital Link URI or scanned data.
fn message(file: &str, value: &Value, opts: &Options) -> Result<ElementString, String> {
    let text = s(value)?;
    let parsed = if file.contains("digital_link") {
        parse_digital_link_with(text, opts)
    } else {
        parse_unbracketed_with(text, opts)
    };
    parsed.map_err(|e| e.to_string())
}

fn check_message_case(file: &str, test: &str, case: &Value, opts: &Options) -> Outcome {
    let value = &case["value"];
    let expected = &case["expected"];
    match test {
        "test_filter_element_strings_by_ai" => {
            let es = message(file, value, opts)?;
            same(
                "values",
                es.values_with_prefix(s(&case["ai"])?),
                strings(expected)?,
            )
        }
        "test_filter_element_strings_by_data_title" => {
            let es = message(file, value, opts)?;
            same(
                "values",
                es.values_by_title(s(&case["data_title"])?),
                strings(expected)?,
            )
        }
        "test_get_element_strings_by_ai" | "test_get_element_string_by_ai" => {
            let es = message(file, value, opts)?;
            let got = es.values_with_prefix(s(&case["ai"])?).first().copied();
            same("value", got, expected.as_str())
        }
        "test_get_element_strings_by_data_title" | "test_get_element_string_by_data_title" => {
            let es = message(file, value, opts)?;
            let got = es.values_by_title(s(&case["data_title"])?).first().copied();
            same("value", got, expected.as_str())
        }
        "test_parse" | "test_parse_with_invalid_element_values" => {
            let es = message(file, value, opts)?;
            same("message", es.to_scanner().as_str(), s(&expected["value"])?)?;
            check_elements(&es, &expected["element_strings"])
        }
        "test_parse_with_separator_char" => {
            let separators: Vec<char> = strings(&case["separator_chars"])?
                .iter()
                .flat_map(|s| s.chars())
                .collect();
            let es = parse_unbracketed_with_separators(s(value)?, &separators, opts)
                .map_err(|e| e.to_string())?;
            same("hri", es.to_bracketed().as_str(), s(&case["expected_hri"])?)
        }
        "test_parse_fails_if_unparsed_data_left" => {
            // biip reads a variable-length value up to its maximum length and then fails on
            // what is left; like GS1's syntax engine, this crate reads it to the next separator
            // and finds it too long (or a component of it too short).
            match parse_unbracketed_with(s(value)?, opts) {
                Err(Gs1Error::TooLong { .. } | Gs1Error::TooShort { .. }) => Ok(()),
                other => Err(format!("expected a length error, got {other:?}")),
            }
        }
        "test_parse_ignores_redundant_separator_chars" => {
            let es = message(file, value, opts)?;
            same("hri", es.to_bracketed().as_str(), s(&case["expected_hri"])?)
        }
        "test_from_element_strings" => {
            let es = element_list(value)?;
            same("message", es.to_scanner().as_str(), s(&expected["value"])?)?;
            check_elements(&es, &expected["element_strings"])
        }
        "test_parse_hri" => {
            let es = parse_bracketed_with(s(value)?, opts).map_err(|e| e.to_string())?;
            same("message", es.to_scanner().as_str(), s(&expected["value"])?)?;
            check_elements(&es, &expected["element_strings"])
        }
        "test_parse_hri_fails_if_not_starting_with_parenthesis" => {
            match parse_bracketed_with(s(value)?, opts) {
                Err(Gs1Error::Empty | Gs1Error::Bracketed(_)) => Ok(()),
                other => Err(format!("expected a bracket error, got {other:?}")),
            }
        }
        "test_parse_hri_fails_if_no_pattern_matches" => match parse_bracketed_with(s(value)?, opts)
        {
            Err(Gs1Error::EmptyValue { .. }) => Ok(()),
            other => Err(format!("expected an empty value error, got {other:?}")),
        },
        "test_parse_hri_fails_if_ai_is_unknown" => match parse_bracketed_with(s(value)?, opts) {
            Err(Gs1Error::UnknownAi(_)) => Ok(()),
            other => Err(format!("expected an unknown ai error, got {other:?}")),
        },
        "test_as_hri" => {
            let es = message(file, value, opts)?;
            same("hri", es.to_bracketed().as_str(), s(expected)?)
        }
        "test_as_gs1_digital_link_uri" => {
            let es = message(file, value, opts)?;
            let uri = es
                .to_digital_link(CANONICAL_STEM)
                .map_err(|e| e.to_string())?;
            same("uri", uri.as_str(), s(expected)?)
        }
        _ => Err(format!("no check for {file} {test}")),
    }
}

#[test]
fn biip_vectors() {
    let doc: Value = serde_json::from_str(BIIP_VECTORS).expect("the biip vectors are json");
    let files = doc["files"].as_object().expect("files");
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut deviations_seen = 0;
    for (file, tests) in files {
        for test in tests.as_array().expect("tests") {
            let name = test["test"].as_str().expect("test name");
            for (i, case) in test["cases"].as_array().expect("cases").iter().enumerate() {
                cases += 1;
                let outcome = match deviation(name, case) {
                    Some(key) => {
                        deviations_seen += 1;
                        check_deviation(name, key, case)
                    }
                    None => check_biip_case(file, name, case),
                };
                if let Err(why) = outcome {
                    failures.push(format!("{file} {name} #{i}: {why}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(cases, 167, "the vector file holds 167 cases");
    assert_eq!(
        deviations_seen,
        BIIP_DEVIATIONS.len(),
        "every listed deviation is a real case"
    );
}
