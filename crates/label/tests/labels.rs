//! Labels are checked by reading them back: the PNG is decoded with `png`, the DataMatrix modules
//! sampled from it are decoded with `datamatrix`'s own reader down to codewords, and the QR code is
//! read from the PNG with `rqrr`. The SVG path is parsed back into a grid. So each test fails if
//! the rendering or the GS1 framing is wrong, not only if it panics.

use std::io::Cursor;

use datamatrix::DataMatrix;
use datamatrix::placement::MatrixMap;
use medledger_label::{
    LabelError, MAX_ELEMENT_STRING_LEN, MAX_PNG_SIDE, MAX_URI_LEN, Symbol, gs1_datamatrix, qr,
};

/// GTIN, serial, then lot after a separator (serial is variable length), then expiry after a
/// separator (lot is variable length).
const GTIN: &str = "0109521234543213";
const SERIAL: &str = "21ABC123";
const LOT: &str = "10LOT42";
const EXPIRY: &str = "17261231";
const DIGITAL_LINK: &str = "https://id.gs1.org/01/09521234543213";

fn example_element_string() -> String {
    format!("{GTIN}{SERIAL}\x1d{LOT}\x1d{EXPIRY}")
}

/// A decoded PNG as 8-bit luminance, row-major.
struct Grey {
    width: usize,
    height: usize,
    luma: Vec<u8>,
}

impl Grey {
    fn at(&self, x: usize, y: usize) -> u8 {
        self.luma[y * self.width + x]
    }
}

fn decode_png(bytes: &[u8]) -> Grey {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // 1-bit greyscale comes out as 8-bit 0/255.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let (width, height) = (info.width as usize, info.height as usize);
    assert_eq!(info.line_size, width);
    buf.truncate(width * height);
    Grey {
        width,
        height,
        luma: buf,
    }
}

/// The module grid read back from a PNG at module centres, row-major, `true` = dark.
fn sample_modules(
    grey: &Grey,
    width: usize,
    height: usize,
    module_px: usize,
    quiet: usize,
) -> Vec<bool> {
    let mut modules = Vec::with_capacity(width * height);
    for y in 0..height {
        for x in 0..width {
            let luma = grey.at(
                (x + quiet) * module_px + module_px / 2,
                (y + quiet) * module_px + module_px / 2,
            );
            assert!(luma == 0 || luma == 255, "not a two-colour image: {luma}");
            modules.push(luma == 0);
        }
    }
    modules
}

fn grid(symbol: &Symbol) -> Vec<bool> {
    (0..symbol.height())
        .flat_map(|y| (0..symbol.width()).map(move |x| symbol.is_dark(x, y)))
        .collect()
}

/// The data codewords of ASCII encodation, spelled out: FNC1 as "<FNC1>", a GS codeword as
/// "<GS>", the pad ends it. Panics on anything else, which the label must not contain.
fn spell_ascii_codewords(codewords: &[u8]) -> String {
    let mut out = String::new();
    for &c in codewords {
        match c {
            232 => out.push_str("<FNC1>"),
            30 => out.push_str("<GS>"),
            1..=128 => out.push(char::from(c - 1)),
            129 => return out,
            130..=229 => out.push_str(&format!("{:02}", c - 130)),
            _ => panic!("codeword {c} is not plain ascii encodation"),
        }
    }
    panic!("no pad codeword: the walk ran into the error correction codewords");
}

// ---- GS1 DataMatrix ----

#[test]
fn datamatrix_decodes_back_to_fnc1_framed_data() {
    let element_string = example_element_string();
    let symbol = gs1_datamatrix(&element_string).expect("encodes");
    // 26 data codewords: the smallest square that holds them is 22x22 (30 data codewords).
    assert_eq!((symbol.width(), symbol.height()), (22, 22));

    let (module_px, quiet) = (3, 2);
    let grey = decode_png(&symbol.to_png(module_px, quiet).expect("png"));
    let modules = sample_modules(&grey, 22, 22, module_px as usize, quiet as usize);
    assert_eq!(modules, grid(&symbol));

    // The whole reader: alignment patterns, Reed-Solomon check, data decodation. It reports FNC1
    // separators as GS and drops the leading FNC1, so it cannot tell FNC1 from GS on its own...
    let data = DataMatrix::decode(&modules, 22).expect("datamatrix decodes");
    assert_eq!(data, element_string.as_bytes());

    // ...so read the codewords too: error-corrected (all zero syndromes), then spelled out.
    let (map, size) = MatrixMap::try_from_bits(&modules, 22).expect("alignment patterns");
    let mut codewords = map.codewords();
    let before = codewords.clone();
    datamatrix::errorcode::decode_error(&mut codewords, size).expect("error correction holds");
    assert_eq!(
        codewords, before,
        "a freshly rendered symbol has no errors to correct"
    );
    assert_eq!(codewords[0], 232, "GS1 mode starts with FNC1");
    assert_eq!(
        spell_ascii_codewords(&codewords),
        format!("<FNC1>{GTIN}{SERIAL}<FNC1>{LOT}<FNC1>{EXPIRY}")
    );
}

#[test]
fn datamatrix_without_separators_has_one_fnc1() {
    let symbol = gs1_datamatrix("0109521234543213172612311012").expect("encodes");
    let (map, _) = MatrixMap::try_from_bits(&grid(&symbol), symbol.width()).expect("symbol");
    assert_eq!(
        spell_ascii_codewords(&map.codewords()),
        "<FNC1>0109521234543213172612311012"
    );
}

#[test]
fn datamatrix_carries_the_whole_gs1_character_set() {
    // Character set 82 (punctuation, both cases) and '#' from set 39.
    let element_string = "21!\"%&'()*+,-./:;<=>?_az#AZ09\x1d10x";
    let symbol = gs1_datamatrix(element_string).expect("encodes");
    let data = DataMatrix::decode(&grid(&symbol), symbol.width()).expect("decodes");
    assert_eq!(data, element_string.as_bytes());
}

#[test]
fn datamatrix_is_square_and_deterministic() {
    for len in [2, 20, 60, 120, MAX_ELEMENT_STRING_LEN] {
        let element_string = "9".repeat(len);
        let a = gs1_datamatrix(&element_string).expect("encodes");
        assert_eq!(a.width(), a.height(), "{len} digits");
        assert_eq!(a, gs1_datamatrix(&element_string).expect("encodes"));
        let data = DataMatrix::decode(&grid(&a), a.width()).expect("decodes");
        assert_eq!(data, element_string.as_bytes());
    }
}

#[test]
fn datamatrix_refuses_bad_element_strings() {
    assert_eq!(
        gs1_datamatrix(""),
        Err(LabelError::Empty {
            what: "element string"
        })
    );
    let too_long = "1".repeat(MAX_ELEMENT_STRING_LEN + 1);
    assert!(matches!(
        gs1_datamatrix(&too_long),
        Err(LabelError::TooLong {
            max: 256,
            got: 257,
            ..
        })
    ));
    for (input, bad, at) in [
        ("21AB C", b' ', 4),
        ("21AB@", b'@', 4),
        ("21~", b'~', 2),
        ("21A\n", b'\n', 3),
        ("21A\x1e", 0x1e, 3),
        ("21\u{e9}", 0xc3, 2),
        ("21A$", b'$', 3),
        ("21[x]", b'[', 2),
    ] {
        assert_eq!(
            gs1_datamatrix(input),
            Err(LabelError::InvalidByte {
                what: "element string",
                byte: bad,
                at
            }),
            "{input:?}"
        );
    }
    for (input, at) in [
        ("\x1d21A", 0),
        ("21A\x1d", 3),
        ("21A\x1d\x1d10B", 4),
        ("AB12", 0),
        ("2X", 1),
        ("21A\x1dX10", 4),
        ("0", 1),
        ("21A\x1d1", 5),
    ] {
        assert!(
            matches!(gs1_datamatrix(input), Err(LabelError::Malformed { at: a, .. }) if a == at),
            "{input:?} gave {:?}",
            gs1_datamatrix(input)
        );
    }
}

// ---- QR ----

fn read_qr(symbol: &Symbol, module_px: u32, quiet: u32) -> (rqrr::MetaData, String) {
    let grey = decode_png(&symbol.to_png(module_px, quiet).expect("png"));
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(grey.width, grey.height, |x, y| grey.at(x, y));
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one qr code in the image");
    grids[0].decode().expect("qr decodes")
}

#[test]
fn qr_decodes_back_to_the_uri() {
    let symbol = qr(DIGITAL_LINK).expect("encodes");
    let (meta, content) = read_qr(&symbol, 4, 4);
    assert_eq!(content, DIGITAL_LINK);
    // rqrr reports the format bits' level field, in which M is 0 (L 1, Q 3, H 2).
    assert_eq!(meta.ecc_level, 0, "error correction level M");
    assert_eq!(meta.version.0, (symbol.width() - 17) / 4);
}

#[test]
fn qr_of_the_longest_uri_decodes() {
    let uri = format!(
        "https://id.gs1.org/01/09521234543213/21/{}",
        "A".repeat(2048)
    );
    let uri = &uri[..MAX_URI_LEN];
    let symbol = qr(uri).expect("encodes");
    assert!(symbol.width() <= 177);
    assert_eq!(read_qr(&symbol, 2, 4).1, uri);
}

/// The 7x7 finder pattern with its top-left module at (x0, y0): dark ring, light ring, dark 3x3.
fn is_finder(symbol: &Symbol, x0: usize, y0: usize) -> bool {
    (0..7).all(|dy| {
        (0..7).all(|dx| {
            let ring = dx.min(dy).min(6 - dx).min(6 - dy);
            symbol.is_dark(x0 + dx, y0 + dy) == (ring != 1)
        })
    })
}

#[test]
fn qr_has_the_structure_of_its_version() {
    let symbol = qr(DIGITAL_LINK).expect("encodes");
    // 36 bytes at level M need version 3 (version 2 holds 28 data codewords): 29 modules.
    let n = symbol.width();
    assert_eq!((n, symbol.height()), (29, 29));
    let version = (n - 17) / 4;

    assert!(is_finder(&symbol, 0, 0));
    assert!(is_finder(&symbol, n - 7, 0));
    assert!(is_finder(&symbol, 0, n - 7));
    assert!(!is_finder(&symbol, n - 7, n - 7));
    // Separators: the light row and column around each finder.
    for i in 0..8 {
        assert!(!symbol.is_dark(i, 7) && !symbol.is_dark(7, i));
        assert!(!symbol.is_dark(n - 1 - i, 7) && !symbol.is_dark(n - 8, i));
        assert!(!symbol.is_dark(i, n - 8) && !symbol.is_dark(7, n - 1 - i));
    }
    // Timing patterns alternate between the finders, dark on even positions.
    for i in 8..n - 8 {
        assert_eq!(symbol.is_dark(i, 6), i % 2 == 0);
        assert_eq!(symbol.is_dark(6, i), i % 2 == 0);
    }
    // The dark module beside the bottom-left finder.
    assert!(symbol.is_dark(8, 4 * version + 9));
    // Outside the grid is light, like the quiet zone.
    assert!(!symbol.is_dark(n, 0) && !symbol.is_dark(0, n));
}

#[test]
fn qr_grids_differ_for_different_uris_and_repeat_for_the_same() {
    let a = qr(DIGITAL_LINK).expect("encodes");
    let b = qr("https://id.gs1.org/01/09521234543220").expect("encodes");
    assert_eq!(a.width(), b.width());
    assert_ne!(a, b);
    assert_eq!(a, qr(DIGITAL_LINK).expect("encodes"));
}

#[test]
fn qr_refuses_bad_uris() {
    assert_eq!(qr(""), Err(LabelError::Empty { what: "uri" }));
    let too_long = format!("https://e.org/{}", "a".repeat(MAX_URI_LEN));
    assert!(matches!(
        qr(&too_long),
        Err(LabelError::TooLong { max: 2048, .. })
    ));
    for (input, byte, at) in [
        ("https://e.org/a b", b' ', 15),
        ("https://e.org/\n", b'\n', 14),
        ("https://e.org/\u{e9}", 0xc3, 14),
        ("\x00", 0, 0),
    ] {
        assert_eq!(
            qr(input),
            Err(LabelError::InvalidByte {
                what: "uri",
                byte,
                at
            }),
            "{input:?}"
        );
    }
}

// ---- PNG ----

#[test]
fn png_has_the_right_size_and_colours() {
    for symbol in [
        gs1_datamatrix(&example_element_string()).expect("encodes"),
        qr(DIGITAL_LINK).expect("encodes"),
    ] {
        for (module_px, quiet) in [(1, 0), (3, 2), (5, 4), (8, 1)] {
            let grey = decode_png(&symbol.to_png(module_px, quiet).expect("png"));
            let (m, q) = (module_px as usize, quiet as usize);
            assert_eq!(grey.width, (symbol.width() + 2 * q) * m);
            assert_eq!(grey.height, (symbol.height() + 2 * q) * m);
            // Every pixel: the quiet zone is white, each module's square is its colour.
            for py in 0..grey.height {
                for px in 0..grey.width {
                    let (mx, my) = (px / m, py / m);
                    let dark = mx >= q && my >= q && symbol.is_dark(mx - q, my - q);
                    assert_eq!(
                        grey.at(px, py),
                        if dark { 0 } else { 255 },
                        "pixel ({px},{py}) at {module_px} px/module, quiet {quiet}"
                    );
                }
            }
        }
    }
}

#[test]
fn png_refuses_degenerate_and_huge_sizes() {
    let symbol = qr(DIGITAL_LINK).expect("encodes");
    assert_eq!(symbol.to_png(0, 4), Err(LabelError::ZeroModule));
    let too_large = Err(LabelError::ImageTooLarge { max: MAX_PNG_SIDE });
    assert_eq!(symbol.to_png(1000, 4), too_large);
    assert_eq!(symbol.to_png(1, u32::MAX), too_large);
    assert_eq!(symbol.to_png(u32::MAX, 0), too_large);
    // Right at the bound is fine: 29 + 2 * 3 = 35 modules; 8192 / 35 = 234 px each.
    assert!(symbol.to_png(MAX_PNG_SIDE / 35, 3).is_ok());
}

// ---- SVG ----

/// The value of `name="..."` in the first tag that has it.
fn attr<'a>(svg: &'a str, name: &str) -> &'a str {
    let start = svg.find(&format!(" {name}=\"")).expect(name) + name.len() + 3;
    let len = svg[start..].find('"').expect("closing quote");
    &svg[start..start + len]
}

/// The dark modules the SVG path paints, read back from its `M x,y h w v h h -w z` subpaths.
fn svg_modules(svg: &str, width: usize, height: usize, m: usize, q: usize) -> Vec<bool> {
    let mut modules = vec![false; width * height];
    let d = attr(&svg[svg.find("<path").expect("path")..], "d");
    for sub in d.split('M').filter(|s| !s.is_empty()) {
        let nums: Vec<usize> = sub
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("number"))
            .collect();
        let [x, y, w, h, back] = nums[..] else {
            panic!("subpath {sub:?} is not a rectangle");
        };
        assert_eq!(sub, format!("{x},{y}h{w}v{h}h-{back}z"));
        assert_eq!((h, back), (m, w), "one module high, closed");
        assert!(x % m == 0 && y % m == 0 && w % m == 0, "on the module grid");
        for mx in x / m..(x + w) / m {
            let cell = &mut modules[(y / m - q) * width + (mx - q)];
            assert!(!*cell, "module painted twice");
            *cell = true;
        }
    }
    modules
}

#[test]
fn svg_is_one_path_of_the_dark_modules() {
    for symbol in [
        gs1_datamatrix(&example_element_string()).expect("encodes"),
        qr(DIGITAL_LINK).expect("encodes"),
    ] {
        for (module_px, quiet) in [(1, 0), (4, 2), (10, 4)] {
            let svg = symbol.to_svg(module_px, quiet);
            let (m, q) = (module_px as usize, quiet as usize);
            let (w, h) = ((symbol.width() + 2 * q) * m, (symbol.height() + 2 * q) * m);
            assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
            assert!(svg.ends_with("</svg>\n"));
            assert_eq!(attr(&svg, "viewBox"), format!("0 0 {w} {h}"));
            assert_eq!(attr(&svg, "width"), w.to_string());
            assert_eq!(attr(&svg, "height"), h.to_string());
            assert_eq!(svg.matches("<path").count(), 1);
            // Well formed in the small: the three elements, each tag closed, nothing else.
            assert_eq!(svg.matches('<').count(), 4);
            assert_eq!(svg.matches('>').count(), 4);
            assert_eq!(svg.matches("/>").count(), 2);
            let lower = svg.to_ascii_lowercase();
            for bad in ["script", "javascript", " on", "href", "<!", "&"] {
                assert!(!lower.contains(bad), "svg contains {bad:?}");
            }
            assert_eq!(
                svg_modules(&svg, symbol.width(), symbol.height(), m, q),
                grid(&symbol)
            );
        }
    }
}

#[test]
fn svg_takes_a_zero_module_size_as_one() {
    let symbol = qr(DIGITAL_LINK).expect("encodes");
    assert_eq!(symbol.to_svg(0, 4), symbol.to_svg(1, 4));
}
