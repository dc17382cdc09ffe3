//! The crate's one error type, [`Gs1Error`], and [`LintError`], the result codes of GS1's syntax
//! linters (named as GS1's reference implementation names them, so a code can be matched against
//! other tools' output).

/// Why an identifier, element string or Digital Link URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gs1Error {
    #[error("{what} must be {expected} digits, got {got:?}")]
    Length {
        what: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("{what} has a bad check digit: {got:?}")]
    CheckDigit { what: &'static str, got: String },
    #[error("no gs1 data")]
    Empty,
    #[error("malformed bracketed element string: {0}")]
    Bracketed(&'static str),
    #[error("unknown ai ({0})")]
    UnknownAi(String),
    #[error("no known ai is a prefix of {0:?}")]
    NoAiPrefix(String),
    #[error("ai ({ai}) has an empty value")]
    EmptyValue { ai: String },
    #[error("ai ({ai}) value is too short")]
    TooShort { ai: String },
    #[error("ai ({ai}) value is too long")]
    TooLong { ai: String },
    /// A component of the value failed one of the dictionary's linters. `markup` is the element
    /// string with the offending characters between `|`, as GS1's syntax engine marks it up.
    #[error("ai ({ai}): {lint}: {markup}")]
    Lint {
        ai: String,
        lint: LintError,
        markup: String,
    },
    #[error("more than {max} ais")]
    TooManyAis { max: usize },
    #[error("ai ({ai}) is repeated with different values")]
    Repeated { ai: String },
    #[error("ai ({ai}) may not be paired with ai ({other})")]
    Excluded { ai: String, other: String },
    #[error("ai ({ai}) requires one of: {required}")]
    Requires { ai: String, required: String },
    #[error("ai (8030) needs a serialised key, but ai ({ai}) has no serial component")]
    DigSigUnserialised { ai: String },
    #[error("unsupported symbology identifier {0:?}")]
    Symbology(String),
    #[error("not a gs1 digital link uri: {0}")]
    Uri(&'static str),
    #[error("no gs1 digital link primary key in the uri path")]
    NoPrimaryKey,
    #[error("invalid key-qualifier sequence in the uri path: {0}")]
    KeyQualifiers(String),
    #[error("ai ({ai}) value in the uri decodes to a nul character")]
    Nul { ai: String },
    #[error("ai ({0}) appears more than once in the uri")]
    DuplicateInUri(String),
    #[error("ai ({0}) is not a digital link data attribute")]
    NotDataAttribute(String),
    #[error("ai ({0}) belongs in the uri path, not the query")]
    ShouldBeInPath(String),
    #[error("invalid date {value:?}: {reason}")]
    Date { value: String, reason: &'static str },
}

// One table gives each linter result its Rust name, GS1's code and our message, so the three
// cannot drift apart.
macro_rules! lint_errors {
    ($($variant:ident => $code:literal, $msg:literal;)*) => {
        /// A GS1 linter result other than "ok".
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum LintError {
            $($variant,)*
        }

        impl LintError {
            /// GS1's name for this result, e.g. `GS1_LINTER_INCORRECT_CHECK_DIGIT`.
            pub fn code(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The result with GS1's name `code`.
            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for LintError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $msg,)*
                })
            }
        }
    };
}

lint_errors! {
    NonDigitCharacter => "GS1_LINTER_NON_DIGIT_CHARACTER", "a non-digit character where a digit is expected";
    InvalidCset82Character => "GS1_LINTER_INVALID_CSET82_CHARACTER", "a character outside cset 82";
    InvalidCset39Character => "GS1_LINTER_INVALID_CSET39_CHARACTER", "a character outside cset 39";
    InvalidCset32Character => "GS1_LINTER_INVALID_CSET32_CHARACTER", "a check character outside cset 32";
    InvalidCset64Character => "GS1_LINTER_INVALID_CSET64_CHARACTER", "a character outside cset 64";
    InvalidCset64Padding => "GS1_LINTER_INVALID_CSET64_PADDING", "wrong cset 64 padding";
    IncorrectCheckDigit => "GS1_LINTER_INCORRECT_CHECK_DIGIT", "incorrect check digit";
    TooShortForCheckDigit => "GS1_LINTER_TOO_SHORT_FOR_CHECK_DIGIT", "too short for a check digit";
    IncorrectCheckPair => "GS1_LINTER_INCORRECT_CHECK_PAIR", "incorrect check character pair";
    TooShortForCheckPair => "GS1_LINTER_TOO_SHORT_FOR_CHECK_PAIR", "too short for a check character pair";
    TooLongForCheckPairImplementation => "GS1_LINTER_TOO_LONG_FOR_CHECK_PAIR_IMPLEMENTATION", "too long for the check character pair";
    TooShortForGcp => "GS1_LINTER_TOO_SHORT_FOR_GCP", "too short to start with a gs1 company prefix";
    InvalidGcpPrefix => "GS1_LINTER_INVALID_GCP_PREFIX", "does not start with a gs1 company prefix";
    ImporterIdxMustBeOneCharacter => "GS1_LINTER_IMPORTER_IDX_MUST_BE_ONE_CHARACTER", "the importer index must be one character";
    InvalidImportIdxCharacter => "GS1_LINTER_INVALID_IMPORT_IDX_CHARACTER", "invalid importer index character";
    IllegalZeroValue => "GS1_LINTER_ILLEGAL_ZERO_VALUE", "a non-zero value is required";
    NotZero => "GS1_LINTER_NOT_ZERO", "a zero value is required";
    IllegalZeroPrefix => "GS1_LINTER_ILLEGAL_ZERO_PREFIX", "a zero prefix is not permitted";
    NotZeroOrOne => "GS1_LINTER_NOT_ZERO_OR_ONE", "0 or 1 is required";
    InvalidWindingDirection => "GS1_LINTER_INVALID_WINDING_DIRECTION", "the winding direction must be 0, 1 or 9";
    NotIso3166 => "GS1_LINTER_NOT_ISO3166", "not an iso 3166 numeric country code";
    NotIso3166Or999 => "GS1_LINTER_NOT_ISO3166_OR_999", "not an iso 3166 numeric country code or 999";
    NotIso3166Alpha2 => "GS1_LINTER_NOT_ISO3166_ALPHA2", "not an iso 3166 alpha-2 country code";
    NotIso4217 => "GS1_LINTER_NOT_ISO4217", "not an iso 4217 numeric currency code";
    IbanTooShort => "GS1_LINTER_IBAN_TOO_SHORT", "the iban is too short";
    IbanTooLong => "GS1_LINTER_IBAN_TOO_LONG", "the iban is too long";
    InvalidIbanCharacter => "GS1_LINTER_INVALID_IBAN_CHARACTER", "invalid iban character";
    IllegalIbanCountryCode => "GS1_LINTER_ILLEGAL_IBAN_COUNTRY_CODE", "the iban does not start with a country code";
    IncorrectIbanChecksum => "GS1_LINTER_INCORRECT_IBAN_CHECKSUM", "incorrect iban check characters";
    DateTooShort => "GS1_LINTER_DATE_TOO_SHORT", "the date is too short";
    DateTooLong => "GS1_LINTER_DATE_TOO_LONG", "the date is too long";
    HourWithMinuteTooShort => "GS1_LINTER_HOUR_WITH_MINUTE_TOO_SHORT", "the time is too short for hhmm";
    HourWithMinuteTooLong => "GS1_LINTER_HOUR_WITH_MINUTE_TOO_LONG", "the time is too long for hhmm";
    IllegalMonth => "GS1_LINTER_ILLEGAL_MONTH", "illegal month";
    IllegalDay => "GS1_LINTER_ILLEGAL_DAY", "illegal day of the month";
    IllegalHour => "GS1_LINTER_ILLEGAL_HOUR", "illegal hour";
    IllegalMinute => "GS1_LINTER_ILLEGAL_MINUTE", "illegal minute";
    IllegalSecond => "GS1_LINTER_ILLEGAL_SECOND", "illegal second";
    InvalidLengthForPieceOfTotal => "GS1_LINTER_INVALID_LENGTH_FOR_PIECE_OF_TOTAL", "piece and total must have equal lengths";
    ZeroPieceNumber => "GS1_LINTER_ZERO_PIECE_NUMBER", "the piece number must not be zero";
    ZeroTotalPieces => "GS1_LINTER_ZERO_TOTAL_PIECES", "the piece total must not be zero";
    PieceNumberExceedsTotal => "GS1_LINTER_PIECE_NUMBER_EXCEEDS_TOTAL", "the piece number exceeds the total";
    InvalidPercentSequence => "GS1_LINTER_INVALID_PERCENT_SEQUENCE", "invalid percent-encoding";
    CouponMissingFormatCode => "GS1_LINTER_COUPON_MISSING_FORMAT_CODE", "coupon format code missing";
    CouponInvalidFormatCode => "GS1_LINTER_COUPON_INVALID_FORMAT_CODE", "coupon format code must be 0 or 1";
    CouponMissingFunderVli => "GS1_LINTER_COUPON_MISSING_FUNDER_VLI", "coupon funder length indicator missing";
    CouponInvalidFunderLength => "GS1_LINTER_COUPON_INVALID_FUNDER_LENGTH", "coupon funder length indicator must be 0 to 6";
    CouponTruncatedFunder => "GS1_LINTER_COUPON_TRUNCATED_FUNDER", "coupon funder truncated";
    CouponTruncatedOfferCode => "GS1_LINTER_COUPON_TRUNCATED_OFFER_CODE", "coupon offer code truncated";
    CouponMissingSerialNumberVli => "GS1_LINTER_COUPON_MISSING_SERIAL_NUMBER_VLI", "coupon serial number length indicator missing";
    CouponTruncatedSerialNumber => "GS1_LINTER_COUPON_TRUNCATED_SERIAL_NUMBER", "coupon serial number truncated";
    CouponMissingGcpVli => "GS1_LINTER_COUPON_MISSING_GCP_VLI", "coupon company prefix length indicator missing";
    CouponInvalidGcpLength => "GS1_LINTER_COUPON_INVALID_GCP_LENGTH", "coupon company prefix length indicator must be 0 to 6";
    CouponTruncatedGcp => "GS1_LINTER_COUPON_TRUNCATED_GCP", "coupon company prefix truncated";
    CouponMissingSaveValueVli => "GS1_LINTER_COUPON_MISSING_SAVE_VALUE_VLI", "coupon save value length indicator missing";
    CouponInvalidSaveValueLength => "GS1_LINTER_COUPON_INVALID_SAVE_VALUE_LENGTH", "coupon save value length indicator must be 1 to 5";
    CouponTruncatedSaveValue => "GS1_LINTER_COUPON_TRUNCATED_SAVE_VALUE", "coupon save value truncated";
    CouponMissing1stPurchaseRequirementVli => "GS1_LINTER_COUPON_MISSING_1ST_PURCHASE_REQUIREMENT_VLI", "coupon first purchase requirement length indicator missing";
    CouponInvalid1stPurchaseRequirementLength => "GS1_LINTER_COUPON_INVALID_1ST_PURCHASE_REQUIREMENT_LENGTH", "coupon first purchase requirement length indicator must be 1 to 5";
    CouponTruncated1stPurchaseRequirement => "GS1_LINTER_COUPON_TRUNCATED_1ST_PURCHASE_REQUIREMENT", "coupon first purchase requirement truncated";
    CouponMissing1stPurchaseRequirementCode => "GS1_LINTER_COUPON_MISSING_1ST_PURCHASE_REQUIREMENT_CODE", "coupon first purchase requirement code missing";
    CouponInvalid1stPurchaseRequirementCode => "GS1_LINTER_COUPON_INVALID_1ST_PURCHASE_REQUIREMENT_CODE", "coupon first purchase requirement code must be 0 to 4 or 9";
    CouponTruncated1stPurchaseFamilyCode => "GS1_LINTER_COUPON_TRUNCATED_1ST_PURCHASE_FAMILY_CODE", "coupon first purchase family code truncated";
    CouponMissingAdditionalPurchaseRulesCode => "GS1_LINTER_COUPON_MISSING_ADDITIONAL_PURCHASE_RULES_CODE", "coupon additional purchase rules code missing";
    CouponInvalidAdditionalPurchaseRulesCode => "GS1_LINTER_COUPON_INVALID_ADDITIONAL_PURCHASE_RULES_CODE", "coupon additional purchase rules code must be 0 to 3";
    CouponMissing2ndPurchaseRequirementVli => "GS1_LINTER_COUPON_MISSING_2ND_PURCHASE_REQUIREMENT_VLI", "coupon second purchase requirement length indicator missing";
    CouponInvalid2ndPurchaseRequirementLength => "GS1_LINTER_COUPON_INVALID_2ND_PURCHASE_REQUIREMENT_LENGTH", "coupon second purchase requirement length indicator must be 1 to 5";
    CouponTruncated2ndPurchaseRequirement => "GS1_LINTER_COUPON_TRUNCATED_2ND_PURCHASE_REQUIREMENT", "coupon second purchase requirement truncated";
    CouponMissing2ndPurchaseRequirementCode => "GS1_LINTER_COUPON_MISSING_2ND_PURCHASE_REQUIREMENT_CODE", "coupon second purchase requirement code missing";
    CouponInvalid2ndPurchaseRequirementCode => "GS1_LINTER_COUPON_INVALID_2ND_PURCHASE_REQUIREMENT_CODE", "coupon second purchase requirement code must be 0 to 4 or 9";
    CouponTruncated2ndPurchaseFamilyCode => "GS1_LINTER_COUPON_TRUNCATED_2ND_PURCHASE_FAMILY_CODE", "coupon second purchase family code truncated";
    CouponMissing2ndPurchaseGcpVli => "GS1_LINTER_COUPON_MISSING_2ND_PURCHASE_GCP_VLI", "coupon second purchase company prefix length indicator missing";
    CouponInvalid2ndPurchaseGcpLength => "GS1_LINTER_COUPON_INVALID_2ND_PURCHASE_GCP_LENGTH", "coupon second purchase company prefix length indicator must be 0 to 6 or 9";
    CouponTruncated2ndPurchaseGcp => "GS1_LINTER_COUPON_TRUNCATED_2ND_PURCHASE_GCP", "coupon second purchase company prefix truncated";
    CouponMissing3rdPurchaseRequirementVli => "GS1_LINTER_COUPON_MISSING_3RD_PURCHASE_REQUIREMENT_VLI", "coupon third purchase requirement length indicator missing";
    CouponInvalid3rdPurchaseRequirementLength => "GS1_LINTER_COUPON_INVALID_3RD_PURCHASE_REQUIREMENT_LENGTH", "coupon third purchase requirement length indicator must be 1 to 5";
    CouponTruncated3rdPurchaseRequirement => "GS1_LINTER_COUPON_TRUNCATED_3RD_PURCHASE_REQUIREMENT", "coupon third purchase requirement truncated";
    CouponMissing3rdPurchaseRequirementCode => "GS1_LINTER_COUPON_MISSING_3RD_PURCHASE_REQUIREMENT_CODE", "coupon third purchase requirement code missing";
    CouponInvalid3rdPurchaseRequirementCode => "GS1_LINTER_COUPON_INVALID_3RD_PURCHASE_REQUIREMENT_CODE", "coupon third purchase requirement code must be 0 to 4 or 9";
    CouponTruncated3rdPurchaseFamilyCode => "GS1_LINTER_COUPON_TRUNCATED_3RD_PURCHASE_FAMILY_CODE", "coupon third purchase family code truncated";
    CouponMissing3rdPurchaseGcpVli => "GS1_LINTER_COUPON_MISSING_3RD_PURCHASE_GCP_VLI", "coupon third purchase company prefix length indicator missing";
    CouponInvalid3rdPurchaseGcpLength => "GS1_LINTER_COUPON_INVALID_3RD_PURCHASE_GCP_LENGTH", "coupon third purchase company prefix length indicator must be 0 to 6 or 9";
    CouponTruncated3rdPurchaseGcp => "GS1_LINTER_COUPON_TRUNCATED_3RD_PURCHASE_GCP", "coupon third purchase company prefix truncated";
    CouponTooShortForExpirationDate => "GS1_LINTER_COUPON_TOO_SHORT_FOR_EXPIRATION_DATE", "coupon expiration date truncated";
    // GS1's code name carries this spelling.
    CouponInvalidExpirationDate => "GS1_LINTER_COUPON_INVALID_EXIPIRATION_DATE", "coupon expiration date invalid";
    CouponTooShortForStartDate => "GS1_LINTER_COUPON_TOO_SHORT_FOR_START_DATE", "coupon start date truncated";
    CouponInvalidStartDate => "GS1_LINTER_COUPON_INVALID_START_DATE", "coupon start date invalid";
    CouponExpirationBeforeStart => "GS1_LINTER_COUPON_EXPIRATION_BEFORE_START", "coupon expires before it starts";
    CouponMissingRetailerGcpOrGlnVli => "GS1_LINTER_COUPON_MISSING_RETAILER_GCP_OR_GLN_VLI", "coupon retailer length indicator missing";
    CouponInvalidRetailerGcpOrGlnLength => "GS1_LINTER_COUPON_INVALID_RETAILER_GCP_OR_GLN_LENGTH", "coupon retailer length indicator must be 1 to 7";
    CouponTruncatedRetailerGcpOrGln => "GS1_LINTER_COUPON_TRUNCATED_RETAILER_GCP_OR_GLN", "coupon retailer company prefix or gln truncated";
    CouponMissingSaveValueCode => "GS1_LINTER_COUPON_MISSING_SAVE_VALUE_CODE", "coupon save value code missing";
    CouponInvalidSaveValueCode => "GS1_LINTER_COUPON_INVALID_SAVE_VALUE_CODE", "coupon save value code must be 0, 1, 2, 5 or 6";
    CouponMissingSaveValueAppliesToItem => "GS1_LINTER_COUPON_MISSING_SAVE_VALUE_APPLIES_TO_ITEM", "coupon save value applies-to-item missing";
    CouponInvalidSaveValueAppliesToItem => "GS1_LINTER_COUPON_INVALID_SAVE_VALUE_APPLIES_TO_ITEM", "coupon save value applies-to-item must be 0 to 2";
    CouponMissingStoreCouponFlag => "GS1_LINTER_COUPON_MISSING_STORE_COUPON_FLAG", "coupon store coupon flag missing";
    CouponMissingDontMultiplyFlag => "GS1_LINTER_COUPON_MISSING_DONT_MULTIPLY_FLAG", "coupon don't-multiply flag missing";
    CouponInvalidDontMultiplyFlag => "GS1_LINTER_COUPON_INVALID_DONT_MULTIPLY_FLAG", "coupon don't-multiply flag must be 0 or 1";
    CouponExcessData => "GS1_LINTER_COUPON_EXCESS_DATA", "coupon has excess data";
    InvalidLatitude => "GS1_LINTER_INVALID_LATITUDE", "latitude out of range";
    InvalidLongitude => "GS1_LINTER_INVALID_LONGITUDE", "longitude out of range";
    LatitudeInvalidLength => "GS1_LINTER_LATITUDE_INVALID_LENGTH", "latitude must be 10 digits";
    LongitudeInvalidLength => "GS1_LINTER_LONGITUDE_INVALID_LENGTH", "longitude must be 10 digits";
    InvalidMediaType => "GS1_LINTER_INVALID_MEDIA_TYPE", "not an aidc media type";
    NotHyphen => "GS1_LINTER_NOT_HYPHEN", "only hyphens are permitted";
    InvalidPackageType => "GS1_LINTER_INVALID_PACKAGE_TYPE", "not a package type code";
    InvalidBiologicalSexCode => "GS1_LINTER_INVALID_BIOLOGICAL_SEX_CODE", "not an iso 5218 biological sex code";
    PositionInSequenceMalformed => "GS1_LINTER_POSITION_IN_SEQUENCE_MALFORMED", "position in sequence must be <pos>/<end>";
    PositionExceedsEnd => "GS1_LINTER_POSITION_EXCEEDS_END", "the position exceeds the end";
    RequiresNonDigitCharacter => "GS1_LINTER_REQUIRES_NON_DIGIT_CHARACTER", "a non-digit character is required";
}
