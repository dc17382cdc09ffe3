//! HIPAA Safe Harbor de-identification (45 CFR 164.514(b)(2)) of VCF 4.x (Variant Call Format)
//! files for a research release. It streams from a `BufRead` to a `Write` one line at a time,
//! because a VCF can be many gigabytes: memory holds one line, never more than
//! [`VCF_LINE_BYTES_MAX`] bytes, and a longer line is refused before it is read in full.
//!
//! The rules:
//!
//! - **Structure is checked, not guessed.** The first line must be `##fileformat=VCFv4.x`, and it
//!   is kept: it says how to read the rest, and a file without it may not be a VCF at all. Meta
//!   lines (`##key=value`) follow, then exactly one header line spelled as the specification
//!   spells it (`#CHROM POS ID REF ALT QUAL FILTER INFO`, tab-separated, optionally followed by
//!   `FORMAT` and the sample columns), then the data lines. A data line before the header, a
//!   second header, a meta line after it, a data line whose column count differs from the
//!   header's, or a blank line anywhere but at the very end is refused as
//!   [`VcfError::Malformed`] with its line number. A file this module cannot read as a VCF is
//!   one whose identifiers it cannot be sure to have found, so it releases nothing of it.
//! - **Meta lines are kept by an allowlist**, since removal, not recognition of identifiers, is
//!   what can be relied on (as in [`deidentify`](mod@crate::deidentify)). `INFO`, `FILTER`, `FORMAT`, `ALT` and
//!   `contig` lines describe the schema the data lines use and are kept byte for byte when they
//!   have the structured form `<...>`; under those keys any other value is free text and is
//!   dropped. `fileDate` becomes its year (`##fileDate=2009`), the only part of a date Safe Harbor
//!   allows; a date that is not a valid `YYYYMMDD` or `YYYY-MM-DD`, lies after `reference_year`
//!   or more than [`AGE_YEARS_MAX`] years before it is dropped, since it cannot be the file's
//!   date and might be a birth date. `reference`, `assembly` and `phasing` are kept only when
//!   their value is a bare name (`[A-Za-z0-9._-]{1,64}`, e.g. `GRCh38`, `hg19`, `partial`): a
//!   path or URL may name a person, an institution or a place. The specification defines
//!   `assembly` as a URL, so in practice it is dropped. Every other meta line is dropped and
//!   counted: `SAMPLE` and `PEDIGREE` lines name individuals and their relatives, `source` and
//!   `commandline` carry paths, user names and hosts, and a key this module does not know may hold
//!   anything. A second `fileformat` line is refused, since the output would not be valid VCF.
//! - **Samples are renamed.** The sample columns of the header are the individuals' ids; the
//!   first becomes `sample_pseudonym` and the n-th (n ≥ 2) `{sample_pseudonym}-{n}`, so columns
//!   stay distinct and in order while nothing of the original names remains. The pseudonym must
//!   itself be a bare name, so that it cannot break the line's structure.
//! - **Data lines are kept byte for byte**, once their column count is checked: genotypes,
//!   positions and variant ids are the research content. This module removes the Safe Harbor
//!   identifiers from the file's text; a genome remains identifying in itself, which is for the
//!   release's governance to weigh, not for a text filter to hide.
//! - **Encoding.** Meta and header lines must be UTF-8 (VCF 4.3 makes the whole file UTF-8, and
//!   this module must read those lines to judge them); other bytes there are refused. Data lines
//!   are passed through as bytes, since nothing in them is interpreted but the tabs. Lines end in
//!   `\n` or `\r\n` and the output's in `\n`. A carriage return anywhere else is refused, since
//!   some readers take it for a line break and the output would then not have the structure
//!   checked here.
//!
//! On an error the writer has received the start of the output, every line of it de-identified
//! but the file incomplete: the caller discards it.

use std::borrow::Cow;
use std::io::{BufRead, BufWriter, Read, Write};

use crate::deidentify::AGE_YEARS_MAX;

/// The longest line accepted, not counting its `\n` or `\r\n`. A VCF line grows with the number
/// of samples (a few bytes each); 4 MiB holds a data line of several hundred thousand samples.
pub const VCF_LINE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The longest value kept as a bare name (`reference`, `assembly`, `phasing`) and the longest
/// sample pseudonym accepted. Assembly names are short (`GRCh38.p14`); a long value is more
/// likely a description than a name.
pub const BARE_NAME_BYTES_MAX: usize = 64;

/// The header line's fixed columns, in order, as VCF 4.x spells them.
const HEADER_COLUMNS: [&str; 8] = [
    "#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
];

/// Why a VCF was not de-identified. Line numbers count from 1.
#[derive(Debug, thiserror::Error)]
pub enum VcfError {
    #[error("reading or writing the VCF failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line} is not valid VCF: {reason}")]
    Malformed { line: u64, reason: String },
    #[error("line {line} is longer than {VCF_LINE_BYTES_MAX} bytes")]
    LineTooLong { line: u64 },
    #[error(
        "the sample pseudonym must be 1 to {BARE_NAME_BYTES_MAX} letters, digits, `.`, `_` or `-`"
    )]
    InvalidPseudonym,
}

/// What a de-identification kept and dropped, for the release's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcfStats {
    /// Meta lines written, `fileformat` and a generalised `fileDate` included.
    pub meta_lines_kept: u64,
    /// Meta lines removed.
    pub meta_lines_dropped: u64,
    /// Sample columns in the header, all renamed.
    pub samples: usize,
    /// Data lines written.
    pub records: u64,
}

/// De-identifies the VCF read from `reader` into `writer` (see the module's rules), returning
/// what was kept and dropped.
///
/// `sample_pseudonym`: what every sample column is renamed to (the first sample gets it as is,
/// the n-th (n >= 2) gets `{sample_pseudonym}-{n}`). `reference_year`: the year dates are
/// generalised against (Safe Harbor: dates to year only). The writer is buffered here, so an
/// unbuffered one is fine.
pub fn deidentify_vcf(
    mut reader: impl BufRead,
    writer: impl Write,
    sample_pseudonym: &str,
    reference_year: i32,
) -> Result<VcfStats, VcfError> {
    if !is_bare_name(sample_pseudonym) {
        return Err(VcfError::InvalidPseudonym);
    }
    let mut writer = BufWriter::new(writer);
    let mut stats = VcfStats::default();
    let mut line = Vec::new();
    let mut number: u64 = 0;
    // The header's column count, once the header has been read.
    let mut columns: Option<usize> = None;
    // A blank line is allowed only as the last line, so it is refused when another follows.
    let mut blank: Option<u64> = None;
    while read_line(&mut reader, &mut line, number + 1)? {
        number += 1;
        if number == 1 {
            if !is_fileformat(&line) {
                return Err(malformed(
                    number,
                    "the first line must be ##fileformat=VCFv4.x",
                ));
            }
            write_line(&mut writer, &line)?;
            stats.meta_lines_kept += 1;
            continue;
        }
        if let Some(blank) = blank {
            return Err(malformed(
                blank,
                "a blank line is allowed only at the end of the file",
            ));
        }
        if line.is_empty() {
            blank = Some(number);
            continue;
        }
        match columns {
            None if line.starts_with(b"##") => {
                match meta_line(text(&line, number)?, reference_year) {
                    Ok(Some(kept)) => {
                        write_line(&mut writer, kept.as_bytes())?;
                        stats.meta_lines_kept += 1;
                    }
                    Ok(None) => stats.meta_lines_dropped += 1,
                    Err(reason) => return Err(malformed(number, reason)),
                }
            }
            None if line.starts_with(b"#") => {
                let samples =
                    header(text(&line, number)?).map_err(|reason| malformed(number, reason))?;
                write_header(&mut writer, samples, sample_pseudonym)?;
                stats.samples = samples.unwrap_or(0);
                columns = Some(HEADER_COLUMNS.len() + samples.map_or(0, |samples| samples + 1));
            }
            None => {
                return Err(malformed(
                    number,
                    "a data line comes before the #CHROM header line",
                ));
            }
            Some(_) if line.starts_with(b"#") => {
                return Err(malformed(
                    number,
                    "a meta or header line comes after the #CHROM header line",
                ));
            }
            Some(expected) => {
                let found = line.iter().filter(|&&byte| byte == b'\t').count() + 1;
                if found != expected {
                    return Err(VcfError::Malformed {
                        line: number,
                        reason: format!(
                            "the data line has {found} columns, the header has {expected}"
                        ),
                    });
                }
                write_line(&mut writer, &line)?;
                stats.records += 1;
            }
        }
    }
    if number == 0 {
        return Err(malformed(
            1,
            "the file is empty; the first line must be ##fileformat=VCFv4.x",
        ));
    }
    if columns.is_none() {
        return Err(malformed(
            number + 1,
            "the file ends before its #CHROM header line",
        ));
    }
    writer.flush()?;
    Ok(stats)
}

/// Reads line `number` into `line` without its `\n` or `\r\n`, and returns whether there was one.
/// At most [`VCF_LINE_BYTES_MAX`] bytes and the line end are read, so a longer line is refused
/// having cost that much memory and no more.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>, number: u64) -> Result<bool, VcfError> {
    line.clear();
    // The bound, then `\r\n`: a line that does not end within it is too long.
    let bytes_max = VCF_LINE_BYTES_MAX as u64 + 2;
    if Read::take(&mut *reader, bytes_max).read_until(b'\n', line)? == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > VCF_LINE_BYTES_MAX {
        return Err(VcfError::LineTooLong { line: number });
    }
    if line.contains(&b'\r') {
        return Err(malformed(
            number,
            "a carriage return is allowed only before the line's \\n",
        ));
    }
    Ok(true)
}

fn write_line(writer: &mut impl Write, line: &[u8]) -> Result<(), VcfError> {
    writer.write_all(line)?;
    writer.write_all(b"\n")?;
    Ok(())
}

fn malformed(line: u64, reason: &str) -> VcfError {
    VcfError::Malformed {
        line,
        reason: reason.to_owned(),
    }
}

/// A meta or header line as text: this module must read it to judge it.
fn text(line: &[u8], number: u64) -> Result<&str, VcfError> {
    std::str::from_utf8(line).map_err(|_| malformed(number, "a meta or header line is not UTF-8"))
}

/// Whether `line` is `##fileformat=VCFv4.` followed by a minor version.
fn is_fileformat(line: &[u8]) -> bool {
    line.strip_prefix(b"##fileformat=VCFv4.")
        .is_some_and(|minor| !minor.is_empty() && minor.iter().all(u8::is_ascii_digit))
}

/// What becomes of a meta line (`##key=value`) after the first: `Some` of what to write, `None`
/// to drop it, or why the file is refused.
fn meta_line(line: &str, reference_year: i32) -> Result<Option<Cow<'_, str>>, &'static str> {
    let Some((key, value)) = line
        .strip_prefix("##")
        .and_then(|meta| meta.split_once('='))
    else {
        return Ok(None);
    };
    Ok(match key {
        "fileformat" => return Err("a second ##fileformat line"),
        "INFO" | "FILTER" | "FORMAT" | "ALT" | "contig" => {
            (value.starts_with('<') && value.ends_with('>')).then_some(Cow::Borrowed(line))
        }
        "reference" | "assembly" | "phasing" => is_bare_name(value).then_some(Cow::Borrowed(line)),
        "fileDate" => {
            file_year(value, reference_year).map(|year| Cow::Owned(format!("##fileDate={year}")))
        }
        _ => None,
    })
}

/// Whether `value` is a name such as `GRCh38` or `hg19`: 1 to [`BARE_NAME_BYTES_MAX`] ASCII
/// letters, digits, `.`, `_` or `-`, so no path, URL or sentence.
fn is_bare_name(value: &str) -> bool {
    (1..=BARE_NAME_BYTES_MAX).contains(&value.len())
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// The year of a `fileDate` (`YYYYMMDD`, as the specification writes it, or `YYYY-MM-DD`) if it
/// is a real date no later than `reference_year` and at most [`AGE_YEARS_MAX`] years before it.
fn file_year(value: &str, reference_year: i32) -> Option<i32> {
    let bytes = value.as_bytes();
    let (year, month, day) = match bytes.len() {
        8 => (bytes.get(0..4)?, bytes.get(4..6)?, bytes.get(6..8)?),
        10 if bytes.get(4) == Some(&b'-') && bytes.get(7) == Some(&b'-') => {
            (bytes.get(0..4)?, bytes.get(5..7)?, bytes.get(8..10)?)
        }
        _ => return None,
    };
    let (year, month, day) = (digits(year)?, digits(month)?, digits(day)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    (reference_year.saturating_sub(AGE_YEARS_MAX)..=reference_year)
        .contains(&year)
        .then_some(year)
}

/// The value of a run of ASCII digits (at most four here, so it cannot overflow).
fn digits(bytes: &[u8]) -> Option<i32> {
    bytes.iter().try_fold(0, |value: i32, byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i32::from(byte - b'0'))
    })
}

fn days_in_month(year: i32, month: i32) -> i32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Checks the header line and returns its sample count, `None` when it has no `FORMAT` column.
fn header(line: &str) -> Result<Option<usize>, &'static str> {
    let mut columns = line.split('\t');
    for expected in HEADER_COLUMNS {
        if columns.next() != Some(expected) {
            return Err(
                "the header line must begin with the tab-separated columns #CHROM, POS, ID, REF, \
                 ALT, QUAL, FILTER and INFO",
            );
        }
    }
    match columns.next() {
        None => Ok(None),
        Some("FORMAT") => {
            let mut samples = 0;
            for name in columns {
                if name.is_empty() {
                    return Err("a sample column has no name");
                }
                samples += 1;
            }
            Ok(Some(samples))
        }
        Some(_) => Err("the column after INFO must be FORMAT"),
    }
}

/// Writes the header line with `samples` sample columns renamed from `pseudonym`, one column at
/// a time: the line is as long as the input's, whatever the number of samples.
fn write_header(
    writer: &mut impl Write,
    samples: Option<usize>,
    pseudonym: &str,
) -> Result<(), VcfError> {
    writer.write_all(HEADER_COLUMNS.join("\t").as_bytes())?;
    if let Some(samples) = samples {
        writer.write_all(b"\tFORMAT")?;
        for n in 1..=samples {
            if n == 1 {
                write!(writer, "\t{pseudonym}")?;
            } else {
                write!(writer, "\t{pseudonym}-{n}")?;
            }
        }
    }
    writer.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use proptest::prelude::*;

    use super::*;

    const YEAR: i32 = 2024;
    const PSEUDONYM: &str = "subject";

    /// A VCF modelled on the VCF 4.2 specification's example (section 1.1), with the sample and
    /// pedigree lines of its later sections.
    const EXAMPLE: &str = "\
##fileformat=VCFv4.2
##fileDate=20090805
##source=myImputationProgramV3.1
##reference=file:///seq/references/1000GenomesPilot-NCBI36.fasta
##contig=<ID=20,length=62435964,assembly=B36,md5=f126cdf8a6e0c7f379d618ff66beb2da,species=\"Homo sapiens\",taxonomy=x>
##phasing=partial
##INFO=<ID=NS,Number=1,Type=Integer,Description=\"Number of Samples With Data\">
##INFO=<ID=DP,Number=1,Type=Integer,Description=\"Total Depth\">
##INFO=<ID=AF,Number=A,Type=Float,Description=\"Allele Frequency\">
##INFO=<ID=AA,Number=1,Type=String,Description=\"Ancestral Allele\">
##INFO=<ID=DB,Number=0,Type=Flag,Description=\"dbSNP membership, build 129\">
##INFO=<ID=H2,Number=0,Type=Flag,Description=\"HapMap2 membership\">
##FILTER=<ID=q10,Description=\"Quality below 10\">
##FILTER=<ID=s50,Description=\"Less than 50% of samples have data\">
##ALT=<ID=DEL,Description=\"Deletion relative to the reference\">
##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description=\"Genotype Quality\">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description=\"Read Depth\">
##FORMAT=<ID=HQ,Number=2,Type=Integer,Description=\"Haplotype Quality\">
##SAMPLE=<ID=NA00001,Genomes=Germline,Mixture=1.,Description=\"Patient germline genome\">
##PEDIGREE=<Child=NA00003,Mother=NA00001,Father=NA00002>
##commandline=impute --in /home/jsmith/NA00001.bam
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA00001\tNA00002\tNA00003
20\t14370\trs6054257\tG\tA\t29\tPASS\tNS=3;DP=14;AF=0.5;DB;H2\tGT:GQ:DP:HQ\t0|0:48:1:51,51\t1|0:48:8:51,51\t1/1:43:5:.,.
20\t17330\t.\tT\tA\t3\tq10\tNS=3;DP=11;AF=0.017\tGT:GQ:DP:HQ\t0|0:49:3:58,50\t0|1:3:5:65,3\t0/0:41:3
20\t1110696\trs6040355\tA\tG,T\t67\tPASS\tNS=2;DP=10;AF=0.333,0.667;AA=T;DB\tGT:GQ:DP:HQ\t1|2:21:6:23,27\t2|1:2:0:18,2\t2/2:35:4
20\t1230237\t.\tT\t.\t47\tPASS\tNS=3;DP=13;AA=T\tGT:GQ:DP:HQ\t0|0:54:7:56,60\t0|0:48:4:51,51\t0/0:61:2
20\t1234567\tmicrosat1\tGTC\tG,GTCT\t50\tPASS\tNS=3;DP=9;AA=G\tGT:GQ:DP\t0/1:35:4\t0/2:17:2\t1/1:40:3
";

    /// What [`EXAMPLE`] becomes.
    const EXAMPLE_DEIDENTIFIED: &str = "\
##fileformat=VCFv4.2
##fileDate=2009
##contig=<ID=20,length=62435964,assembly=B36,md5=f126cdf8a6e0c7f379d618ff66beb2da,species=\"Homo sapiens\",taxonomy=x>
##phasing=partial
##INFO=<ID=NS,Number=1,Type=Integer,Description=\"Number of Samples With Data\">
##INFO=<ID=DP,Number=1,Type=Integer,Description=\"Total Depth\">
##INFO=<ID=AF,Number=A,Type=Float,Description=\"Allele Frequency\">
##INFO=<ID=AA,Number=1,Type=String,Description=\"Ancestral Allele\">
##INFO=<ID=DB,Number=0,Type=Flag,Description=\"dbSNP membership, build 129\">
##INFO=<ID=H2,Number=0,Type=Flag,Description=\"HapMap2 membership\">
##FILTER=<ID=q10,Description=\"Quality below 10\">
##FILTER=<ID=s50,Description=\"Less than 50% of samples have data\">
##ALT=<ID=DEL,Description=\"Deletion relative to the reference\">
##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description=\"Genotype Quality\">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description=\"Read Depth\">
##FORMAT=<ID=HQ,Number=2,Type=Integer,Description=\"Haplotype Quality\">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tsubject\tsubject-2\tsubject-3
20\t14370\trs6054257\tG\tA\t29\tPASS\tNS=3;DP=14;AF=0.5;DB;H2\tGT:GQ:DP:HQ\t0|0:48:1:51,51\t1|0:48:8:51,51\t1/1:43:5:.,.
20\t17330\t.\tT\tA\t3\tq10\tNS=3;DP=11;AF=0.017\tGT:GQ:DP:HQ\t0|0:49:3:58,50\t0|1:3:5:65,3\t0/0:41:3
20\t1110696\trs6040355\tA\tG,T\t67\tPASS\tNS=2;DP=10;AF=0.333,0.667;AA=T;DB\tGT:GQ:DP:HQ\t1|2:21:6:23,27\t2|1:2:0:18,2\t2/2:35:4
20\t1230237\t.\tT\t.\t47\tPASS\tNS=3;DP=13;AA=T\tGT:GQ:DP:HQ\t0|0:54:7:56,60\t0|0:48:4:51,51\t0/0:61:2
20\t1234567\tmicrosat1\tGTC\tG,GTCT\t50\tPASS\tNS=3;DP=9;AA=G\tGT:GQ:DP\t0/1:35:4\t0/2:17:2\t1/1:40:3
";

    /// The smallest VCF around `middle`: the first line, then `middle`'s lines, then a header
    /// with one sample and one data line.
    fn vcf(middle: &str) -> String {
        format!(
            "##fileformat=VCFv4.3\n{middle}#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA00001\n\
             1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\n"
        )
    }

    fn run(input: &[u8]) -> Result<(Vec<u8>, VcfStats), VcfError> {
        let mut output = Vec::new();
        let stats = deidentify_vcf(input, &mut output, PSEUDONYM, YEAR)?;
        Ok((output, stats))
    }

    /// De-identifies `input` and compares the output, or `error: ` and the error, with
    /// `expected`.
    fn check(input: &[u8], expected: &str) {
        let got = match run(input) {
            Ok((output, _)) => String::from_utf8_lossy(&output).into_owned(),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(got, expected, "input: {:?}", String::from_utf8_lossy(input));
    }

    /// The example loses its sample ids, file date, reference path, source, command line and
    /// sample and pedigree lines, and keeps everything else as it was.
    #[test]
    fn example() {
        check(EXAMPLE.as_bytes(), EXAMPLE_DEIDENTIFIED);
        let (output, stats) = run(EXAMPLE.as_bytes()).expect("de-identifies");
        let output = String::from_utf8(output).expect("UTF-8");
        for gone in [
            "NA0000",
            "20090805",
            "0805",
            "file:",
            "/seq/",
            "NCBI36",
            "myImputation",
            "jsmith",
            "##source",
            "##reference",
            "##SAMPLE",
            "##PEDIGREE",
        ] {
            assert!(!output.contains(gone), "{gone} is in the output");
        }
        // Schema and data lines, byte for byte.
        let output_lines: Vec<&str> = output.lines().collect();
        for line in EXAMPLE.lines().filter(|line| {
            [
                "##INFO", "##FILTER", "##FORMAT", "##ALT", "##contig", "20\t",
            ]
            .iter()
            .any(|start| line.starts_with(start))
        }) {
            assert!(output_lines.contains(&line), "{line} is not in the output");
        }
        assert_eq!(
            stats,
            VcfStats {
                meta_lines_kept: 17,
                meta_lines_dropped: 5,
                samples: 3,
                records: 5,
            }
        );
    }

    /// Each kind of meta line is kept, generalised or dropped as the module's rules say.
    #[test]
    fn meta_lines() {
        let cases: &[(&str, Option<&str>)] = &[
            ("##fileDate=20090805", Some("##fileDate=2009")),
            ("##fileDate=2009-08-05", Some("##fileDate=2009")),
            ("##fileDate=20240229", Some("##fileDate=2024")),
            ("##fileDate=19350101", Some("##fileDate=1935")),
            // Not a date, a date that does not exist, in the future or over 89 years ago.
            ("##fileDate=August 5th 2009", None),
            ("##fileDate=2009080", None),
            ("##fileDate=20091305", None),
            ("##fileDate=20090230", None),
            ("##fileDate=20230229", None),
            ("##fileDate=20250101", None),
            ("##fileDate=19341231", None),
            ("##fileDate=200908\u{e9}", None),
            ("##fileDate=+2009-8-5", None),
            ("##reference=GRCh38", Some("##reference=GRCh38")),
            ("##reference=hg19", Some("##reference=hg19")),
            (
                "##reference=GRCh38.p14_no-alt",
                Some("##reference=GRCh38.p14_no-alt"),
            ),
            ("##reference=file:///home/jsmith/hg19.fa", None),
            ("##reference=https://example.org/ref.fa", None),
            ("##reference=Dr Smith's lab build", None),
            ("##reference=", None),
            (&format!("##reference={}", "a".repeat(65)), None),
            ("##assembly=B36", Some("##assembly=B36")),
            ("##assembly=ftp://ftp.example.org/jsmith/asm.fa", None),
            ("##phasing=partial", Some("##phasing=partial")),
            ("##phasing=by John Smith", None),
            (
                "##contig=<ID=1,length=248956422>",
                Some("##contig=<ID=1,length=248956422>"),
            ),
            (
                "##FILTER=<ID=q10,Description=\"Quality below 10\">",
                Some("##FILTER=<ID=q10,Description=\"Quality below 10\">"),
            ),
            ("##INFO=John Smith", None),
            ("##FORMAT=<ID=GT", None),
            ("##SAMPLE=<ID=NA00001,Description=\"Patient\">", None),
            ("##PEDIGREE=<Child=NA00003,Mother=NA00001>", None),
            ("##source=myImputationProgramV3.1", None),
            ("##commandline=bcftools call /data/jsmith.bam", None),
            ("##individual-id=NA00001", None),
            ("##info=<ID=lowercase key>", None),
            ("##no equals sign", None),
            ("##", None),
        ];
        for (line, expected) in cases {
            let kept = expected.map_or(String::new(), |kept| format!("{kept}\n"));
            let (dropped, kept_count) = if expected.is_some() { (0, 2) } else { (1, 1) };
            let (output, stats) = run(vcf(&format!("{line}\n")).as_bytes()).expect("de-identifies");
            assert_eq!(
                String::from_utf8(output).expect("UTF-8"),
                vcf(&kept).replace("NA00001", PSEUDONYM),
                "{line}"
            );
            assert_eq!(
                (stats.meta_lines_kept, stats.meta_lines_dropped),
                (kept_count, dropped),
                "{line}"
            );
        }
    }

    /// Sample columns are renamed in order, whatever their number, and a header without FORMAT
    /// or without samples is kept as it is.
    #[test]
    fn samples() {
        let fixed = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO";
        for (samples, renamed) in [
            ("", ""),
            ("\tFORMAT", "\tFORMAT"),
            ("\tFORMAT\tNA00001", "\tFORMAT\tsubject"),
            ("\tFORMAT\tNA00001\tNA00002", "\tFORMAT\tsubject\tsubject-2"),
            (
                "\tFORMAT\ta\tb\tc\td\te\tf\tg\th\ti\tj\tk",
                "\tFORMAT\tsubject\tsubject-2\tsubject-3\tsubject-4\tsubject-5\tsubject-6\tsubject-7\tsubject-8\tsubject-9\tsubject-10\tsubject-11",
            ),
        ] {
            let columns = samples.split('\t').count() - 1;
            let data: String = "x\t".repeat(8 + columns);
            let data = data.trim_end_matches('\t');
            check(
                format!("##fileformat=VCFv4.1\n{fixed}{samples}\n{data}\n").as_bytes(),
                &format!("##fileformat=VCFv4.1\n{fixed}{renamed}\n{data}\n"),
            );
        }
        let (_, stats) = run(vcf("").as_bytes()).expect("de-identifies");
        assert_eq!(stats.samples, 1);
    }

    /// What is not a VCF, or not one this module can vouch for, is refused with its line.
    #[test]
    fn refusals() {
        let header = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA00001";
        let data = "1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/1";
        for (input, expected) in [
            (
                "",
                "line 1 is not valid VCF: the file is empty; the first line must be ##fileformat=VCFv4.x",
            ),
            (
                "\n",
                "line 1 is not valid VCF: the first line must be ##fileformat=VCFv4.x",
            ),
            (
                &format!("{header}\n{data}\n"),
                "line 1 is not valid VCF: the first line must be ##fileformat=VCFv4.x",
            ),
            (
                &format!("##fileDate=20090805\n##fileformat=VCFv4.2\n{header}\n"),
                "line 1 is not valid VCF: the first line must be ##fileformat=VCFv4.x",
            ),
            (
                "##fileformat=VCFv3.3\n",
                "line 1 is not valid VCF: the first line must be ##fileformat=VCFv4.x",
            ),
            (
                "##fileformat=VCFv4.\n",
                "line 1 is not valid VCF: the first line must be ##fileformat=VCFv4.x",
            ),
            (
                "##fileformat=VCFv4.2 \n",
                "line 1 is not valid VCF: the first line must be ##fileformat=VCFv4.x",
            ),
            (
                "##fileformat=VCFv4.2\n",
                "line 2 is not valid VCF: the file ends before its #CHROM header line",
            ),
            (
                "##fileformat=VCFv4.2\n##INFO=<ID=DP>\n",
                "line 3 is not valid VCF: the file ends before its #CHROM header line",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{data}\n{header}\n"),
                "line 2 is not valid VCF: a data line comes before the #CHROM header line",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{header}\n{data}\n{header}\n"),
                "line 4 is not valid VCF: a meta or header line comes after the #CHROM header line",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{header}\n##INFO=<ID=DP>\n"),
                "line 3 is not valid VCF: a meta or header line comes after the #CHROM header line",
            ),
            (
                &format!("##fileformat=VCFv4.2\n##fileformat=VCFv4.2\n{header}\n"),
                "line 2 is not valid VCF: a second ##fileformat line",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{header}\n{data}\t0/0\n"),
                "line 3 is not valid VCF: the data line has 11 columns, the header has 10",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{header}\n{data}\n1\t100\t.\tA\tG\n"),
                "line 4 is not valid VCF: the data line has 5 columns, the header has 10",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{header}\n{data}\n\n{data}\n"),
                "line 4 is not valid VCF: a blank line is allowed only at the end of the file",
            ),
            (
                &format!("##fileformat=VCFv4.2\n\n{header}\n"),
                "line 2 is not valid VCF: a blank line is allowed only at the end of the file",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{header}\n{data}\n\n\n"),
                "line 4 is not valid VCF: a blank line is allowed only at the end of the file",
            ),
            (
                "##fileformat=VCFv4.2\n#CHROM POS ID REF ALT QUAL FILTER INFO\n",
                "line 2 is not valid VCF: the header line must begin with the tab-separated columns #CHROM, POS, ID, REF, ALT, QUAL, FILTER and INFO",
            ),
            (
                "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\n",
                "line 2 is not valid VCF: the header line must begin with the tab-separated columns #CHROM, POS, ID, REF, ALT, QUAL, FILTER and INFO",
            ),
            (
                "##fileformat=VCFv4.2\n#chrom\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n",
                "line 2 is not valid VCF: the header line must begin with the tab-separated columns #CHROM, POS, ID, REF, ALT, QUAL, FILTER and INFO",
            ),
            (
                "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tNA00001\n",
                "line 2 is not valid VCF: the column after INFO must be FORMAT",
            ),
            (
                "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA00001\t\n",
                "line 2 is not valid VCF: a sample column has no name",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{header}\r\r\n"),
                "line 2 is not valid VCF: a carriage return is allowed only before the line's \\n",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{header}\n{data}\rx\n"),
                "line 3 is not valid VCF: a carriage return is allowed only before the line's \\n",
            ),
            (
                &format!("##fileformat=VCFv4.2\n{header}\n{data}\r"),
                "line 3 is not valid VCF: a carriage return is allowed only before the line's \\n",
            ),
        ] {
            check(input.as_bytes(), &format!("error: {expected}"));
        }
    }

    /// Meta and header lines that are not UTF-8 are refused; data lines are passed through as
    /// bytes.
    #[test]
    fn encoding() {
        let mut header = vcf("").into_bytes();
        let at = header
            .iter()
            .position(|&byte| byte == b'N')
            .expect("a sample");
        header[at] = 0xff;
        check(
            &header,
            "error: line 2 is not valid VCF: a meta or header line is not UTF-8",
        );
        let mut meta = b"##fileformat=VCFv4.2\n##SAMPLE=<ID=\xc3>\n".to_vec();
        meta.extend_from_slice(
            vcf("")
                .split_once('\n')
                .map_or("", |(_, rest)| rest)
                .as_bytes(),
        );
        check(
            &meta,
            "error: line 2 is not valid VCF: a meta or header line is not UTF-8",
        );
        let mut data = vcf("").into_bytes();
        let end = data.len() - 1;
        data.splice(end..end, [b'\xff', b'\xfe']);
        let (output, _) = run(&data).expect("de-identifies");
        assert!(output.ends_with(b"\tGT\t0/1\xff\xfe\n"));
    }

    /// `\r\n` line ends give the same output as `\n`, a missing last line end is accepted, and
    /// so is one blank line at the very end.
    #[test]
    fn line_ends() {
        check(
            EXAMPLE.replace('\n', "\r\n").as_bytes(),
            EXAMPLE_DEIDENTIFIED,
        );
        check(
            EXAMPLE.trim_end_matches('\n').as_bytes(),
            EXAMPLE_DEIDENTIFIED,
        );
        check(format!("{EXAMPLE}\n").as_bytes(), EXAMPLE_DEIDENTIFIED);
        check(format!("{EXAMPLE}\r\n").as_bytes(), EXAMPLE_DEIDENTIFIED);
        check(
            "##fileformat=VCFv4.2\r\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\r\n".as_bytes(),
            "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n",
        );
    }

    /// A line of [`VCF_LINE_BYTES_MAX`] bytes is accepted and one byte more is refused, and an
    /// endless line is refused having read no more than the bound.
    #[test]
    fn line_bound() {
        let start = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n";
        let fixed = "1\t100\t.\tA\tG\t50\tPASS\t";
        let longest = format!("{fixed}{}", "A".repeat(VCF_LINE_BYTES_MAX - fixed.len()));
        for end in ["\n", "\r\n", ""] {
            let (output, stats) =
                run(format!("{start}{longest}{end}").as_bytes()).expect("de-identifies");
            assert_eq!(output.len(), start.len() + longest.len() + 1);
            assert_eq!(stats.records, 1);
            check(
                format!("{start}{longest}A{end}").as_bytes(),
                &format!("error: line 3 is longer than {VCF_LINE_BYTES_MAX} bytes"),
            );
        }
        let endless = BufReader::new(
            b"##fileformat=VCFv4.2\n##"
                .as_slice()
                .chain(std::io::repeat(b'#')),
        );
        let got = deidentify_vcf(endless, std::io::sink(), PSEUDONYM, YEAR);
        assert!(
            matches!(got, Err(VcfError::LineTooLong { line: 2 })),
            "{got:?}"
        );
    }

    /// A pseudonym that could break a line or name a path is refused before anything is read.
    #[test]
    fn pseudonyms() {
        for pseudonym in ["", "a b", "a\tb", "a\nb", "../x", "é", &"a".repeat(65)] {
            let got = deidentify_vcf(EXAMPLE.as_bytes(), Vec::new(), pseudonym, YEAR);
            assert!(
                matches!(got, Err(VcfError::InvalidPseudonym)),
                "{pseudonym:?}"
            );
        }
        let (output, _) = {
            let mut output = Vec::new();
            let stats = deidentify_vcf(EXAMPLE.as_bytes(), &mut output, &"a".repeat(64), YEAR)
                .expect("de-identifies");
            (output, stats)
        };
        assert!(
            String::from_utf8(output)
                .expect("UTF-8")
                .contains(&format!("\t{}-3\n", "a".repeat(64)))
        );
    }

    /// A writer's failure is reported as `Io`, not swallowed.
    #[test]
    fn write_failure() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::Error::other("disk full"))
            }
        }
        let got = deidentify_vcf(EXAMPLE.as_bytes(), Broken, PSEUDONYM, YEAR);
        assert!(matches!(got, Err(VcfError::Io(_))), "{got:?}");
    }

    /// The lines of `bytes` as the module reads them: split at `\n`, without a `\r` before it.
    fn lines(bytes: &[u8]) -> Vec<&[u8]> {
        bytes
            .split(|&byte| byte == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .collect()
    }

    /// Inputs that reach past the first checks: arbitrary bytes, the example with random bytes
    /// changed, and lines drawn from VCF-like fragments.
    fn vcf_bytes() -> impl Strategy<Value = Vec<u8>> {
        let fragments = prop::sample::select(vec![
            "##fileformat=VCFv4.2",
            "##fileDate=20090805",
            "##fileDate=1999-02-29",
            "##reference=GRCh38",
            "##reference=/home/NA00001",
            "##SAMPLE=<ID=NA00001>",
            "##INFO=<ID=DP>",
            "##INFO=NA00001",
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT",
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA00001",
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA00001\tNA00002",
            "1\t2\t3\t4\t5\t6\t7\t8",
            "1\t2\t3\t4\t5\t6\t7\t8\t9",
            "1\t2\t3\t4\t5\t6\t7\t8\t9\t10",
            "",
            "\r",
            "\t",
        ]);
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4).prop_map(
                |edits| {
                    let mut bytes = EXAMPLE.as_bytes().to_vec();
                    for (at, byte) in edits {
                        let at = at.index(bytes.len());
                        bytes[at] = byte;
                    }
                    bytes
                }
            ),
            (prop::collection::vec(fragments, 0..8), prop::bool::ANY).prop_map(|(lines, crlf)| {
                let end = if crlf { "\r\n" } else { "\n" };
                lines
                    .iter()
                    .map(|line| format!("{line}{end}"))
                    .collect::<String>()
                    .into_bytes()
            }),
        ]
    }

    /// Generated VCFs whose samples have ids of a shape nothing else in the file has, with those
    /// ids also in sample, pedigree and source lines.
    fn named_vcf() -> impl Strategy<Value = (String, Vec<String>)> {
        (
            prop::collection::vec("[A-Z]{2}[0-9]{5}", 1..6),
            prop::collection::vec((1u32..250_000_000, 0u8..3, 0u8..3, 1u32..100), 0..6),
            "[0-9]{8}",
        )
            .prop_map(|(names, records, date)| {
                let mut text = format!("##fileformat=VCFv4.3\n##fileDate={date}\n");
                for name in &names {
                    text.push_str(&format!("##SAMPLE=<ID={name},Description=\"{name}\">\n"));
                }
                text.push_str(&format!("##source=/home/{}/caller\n", names.join("_")));
                text.push_str("##INFO=<ID=DP,Number=1,Type=Integer,Description=\"Depth\">\n");
                text.push_str("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT");
                for name in &names {
                    text.push_str(&format!("\t{name}"));
                }
                text.push('\n');
                for (position, first, second, depth) in records {
                    text.push_str(&format!("1\t{position}\t.\tA\tG\t50\tPASS\tDP={depth}\tGT"));
                    for _ in &names {
                        text.push_str(&format!("\t{first}|{second}"));
                    }
                    text.push('\n');
                }
                (text, names)
            })
    }

    proptest! {
        /// No input panics; whatever is accepted is written as input lines, a year-only
        /// fileDate and a header whose sample columns are the pseudonyms, none of them an
        /// original sample name.
        #[test]
        fn never_panics(input in vcf_bytes()) {
            let Ok((output, stats)) = run(&input) else {
                return Ok(());
            };
            let input_lines = lines(&input);
            let original_samples: Vec<&[u8]> = input_lines
                .iter()
                .find(|line| line.starts_with(b"#CHROM"))
                .map(|header| header.split(|&byte| byte == b'\t').skip(9).collect())
                .unwrap_or_default();
            prop_assert!(output.ends_with(b"\n"));
            for line in output[..output.len() - 1].split(|&byte| byte == b'\n') {
                if line.starts_with(b"#CHROM") {
                    let samples: Vec<&[u8]> = line.split(|&byte| byte == b'\t').skip(9).collect();
                    prop_assert_eq!(samples.len(), stats.samples);
                    let pseudonyms: Vec<String> = (1..=samples.len())
                        .map(|n| if n == 1 { PSEUDONYM.to_string() } else { format!("{PSEUDONYM}-{n}") })
                        .collect();
                    for (sample, pseudonym) in samples.iter().zip(&pseudonyms) {
                        prop_assert_eq!(*sample, pseudonym.as_bytes());
                    }
                    // So an original name is in the header only if it happens to be a pseudonym.
                    for original in &original_samples {
                        prop_assert!(
                            !samples.contains(original)
                                || pseudonyms.iter().any(|pseudonym| pseudonym.as_bytes() == *original)
                        );
                    }
                } else if let Some(year) = line.strip_prefix(b"##fileDate=") {
                    prop_assert!(year.len() == 4 && year.iter().all(u8::is_ascii_digit));
                } else {
                    prop_assert!(input_lines.contains(&line), "{:?}", String::from_utf8_lossy(line));
                }
            }
        }

        /// A generated VCF's sample ids appear nowhere in the output, and its data lines all
        /// do, unchanged.
        #[test]
        fn sample_names_gone((input, names) in named_vcf()) {
            let (output, stats) = run(input.as_bytes()).expect("de-identifies");
            let output = String::from_utf8(output).expect("UTF-8");
            for name in &names {
                prop_assert!(!output.contains(name.as_str()), "{} is in {}", name, output);
            }
            prop_assert_eq!(stats.samples, names.len());
            let data: Vec<&str> = input.lines().filter(|line| line.starts_with("1\t")).collect();
            prop_assert_eq!(stats.records, data.len() as u64);
            let data_out: String = data.iter().map(|line| format!("{line}\n")).collect();
            prop_assert!(output.ends_with(&data_out));
        }
    }
}
