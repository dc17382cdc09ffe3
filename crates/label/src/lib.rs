//! GS1 labels of a pharmaceutical unit, rendered for print and screen.
//!
//! A unit carries two symbols: a GS1 DataMatrix of its element string (what pharmacy scanners read
//! for verification) and a QR code of its GS1 Digital Link URI (what a phone camera opens). This
//! crate turns each into a module grid ([`Symbol`]) and the grid into PNG or SVG. The symbologies
//! themselves come from maintained crates (`datamatrix`, `qrcode`); what lives here is the GS1
//! framing, input bounds, and rendering. No IO, no clock, no randomness: the same input gives the
//! same bytes.

mod gs1_datamatrix;
mod qr;
mod render;

pub use gs1_datamatrix::{MAX_ELEMENT_STRING_LEN, gs1_datamatrix};
pub use qr::{MAX_URI_LEN, qr};
pub use render::MAX_PNG_SIDE;

/// Why a label could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("the {what} is empty")]
    Empty { what: &'static str },
    #[error("the {what} is {got} bytes, over the limit of {max}")]
    TooLong {
        what: &'static str,
        max: usize,
        got: usize,
    },
    #[error("the {what} has byte 0x{byte:02x} at {at}, which it may not carry")]
    InvalidByte {
        what: &'static str,
        byte: u8,
        at: usize,
    },
    #[error("the element string is malformed at byte {at}: {why}")]
    Malformed { at: usize, why: &'static str },
    #[error("the data matrix encoder refused the data: {0}")]
    DataMatrix(&'static str),
    #[error("the qr encoder refused the uri: {0}")]
    Qr(String),
    #[error("a module must be at least one pixel")]
    ZeroModule,
    #[error("the image would be over {max} pixels on a side")]
    ImageTooLarge { max: u32 },
    #[error("png encoding failed: {0}")]
    Png(String),
}

/// A rendered 2D symbol: a square/rectangular grid of dark (true) / light modules, without quiet
/// zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    width: usize,
    height: usize,
    /// Row-major, `width * height` entries, `true` = dark.
    modules: Vec<bool>,
}

impl Symbol {
    /// Callers in this crate build grids from the encoders' own row-major output, so the length
    /// always matches; the check keeps a future caller from building a grid that `is_dark` would
    /// misread.
    fn new(width: usize, height: usize, modules: Vec<bool>) -> Option<Self> {
        (width.checked_mul(height)? == modules.len()).then_some(Self {
            width,
            height,
            modules,
        })
    }

    /// Width in modules.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in modules.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Whether the module at column `x`, row `y` (from the top left) is dark. Outside the grid is
    /// light, as the quiet zone is.
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.height && self.modules.get(y * self.width + x) == Some(&true)
    }
}
