//! Rendering a [`Symbol`] as SVG (for label layout tools) and PNG (for everything else).
//!
//! Both draw modules as whole squares of `module_px` units with a light quiet zone around them:
//! scanners need the quiet zone, and integral module sizes keep edges sharp.

use std::fmt::Write as _;

use crate::{LabelError, Symbol};

/// Largest PNG accepted, in pixels on a side. A 177-module QR code (version 40) with a 4-module
/// quiet zone at 40 px a module is 7,400 px; the bound keeps a careless `module_px` from asking
/// for gigabytes.
pub const MAX_PNG_SIDE: u32 = 8192;

impl Symbol {
    /// SVG document; one <path> of dark modules, `module_px` user units per module, a quiet zone
    /// of `quiet` modules.
    ///
    /// A white background rectangle sits under the path, so the symbol keeps its light modules on
    /// a dark page or in a dark-mode viewer. A `module_px` of 0 is taken as 1. Each row's dark runs
    /// are one subpath each, which keeps the document small and free of seams between modules.
    pub fn to_svg(&self, module_px: u32, quiet: u32) -> String {
        // u128: (usize modules + 2 * u32 quiet) * u32 pixels cannot overflow it.
        let m = u128::from(module_px.max(1));
        let q = u128::from(quiet);
        let w = (self.width as u128 + 2 * q) * m;
        let h = (self.height as u128 + 2 * q) * m;

        let mut d = String::new();
        for y in 0..self.height {
            let mut x = 0;
            while x < self.width {
                if !self.is_dark(x, y) {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < self.width && self.is_dark(x, y) {
                    x += 1;
                }
                let run = (x - start) as u128 * m;
                // Writing to a String cannot fail.
                let _ = write!(
                    d,
                    "M{},{}h{run}v{m}h-{run}z",
                    (start as u128 + q) * m,
                    (y as u128 + q) * m,
                );
            }
        }
        format!(
            concat!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}" height="{h}" "#,
                r#"viewBox="0 0 {w} {h}" shape-rendering="crispEdges">"#,
                r##"<rect width="{w}" height="{h}" fill="#fff"/>"##,
                r##"<path fill="#000" d="{d}"/>"##,
                "</svg>\n"
            ),
            w = w,
            h = h,
            d = d,
        )
    }

    /// 8-bit greyscale (or 1-bit) PNG bytes, `module_px` pixels per module, quiet zone `quiet`
    /// modules.
    ///
    /// The PNG is 1-bit greyscale (0 dark, 1 light): a two-colour image needs no more, and it is an
    /// eighth of the 8-bit size before compression.
    pub fn to_png(&self, module_px: u32, quiet: u32) -> Result<Vec<u8>, LabelError> {
        if module_px == 0 {
            return Err(LabelError::ZeroModule);
        }
        let too_large = LabelError::ImageTooLarge { max: MAX_PNG_SIDE };
        let side = |modules: usize| -> Option<u32> {
            u32::try_from(modules)
                .ok()?
                .checked_add(quiet.checked_mul(2)?)?
                .checked_mul(module_px)
                .filter(|&px| px <= MAX_PNG_SIDE)
        };
        let w = side(self.width).ok_or_else(|| too_large.clone())?;
        let h = side(self.height).ok_or(too_large)?;

        // Bounded by MAX_PNG_SIDE above, so these conversions and products stay small.
        let (module_px, quiet) = (module_px as usize, quiet as usize);
        let stride = (w as usize).div_ceil(8);
        let mut pixels = Vec::with_capacity(stride * h as usize);
        let mut row = vec![0u8; stride];
        for py in 0..h as usize {
            if py % module_px == 0 {
                // A new module row: build its pixel row once, repeat it `module_px` times.
                let my = (py / module_px).checked_sub(quiet);
                row.fill(0);
                for px in 0..w as usize {
                    let mx = (px / module_px).checked_sub(quiet);
                    let dark = matches!((mx, my), (Some(x), Some(y)) if self.is_dark(x, y));
                    if !dark {
                        row[px / 8] |= 0x80 >> (px % 8);
                    }
                }
            }
            pixels.extend_from_slice(&row);
        }

        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        let png_error = |e: png::EncodingError| LabelError::Png(e.to_string());
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&pixels).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
        Ok(out)
    }
}
