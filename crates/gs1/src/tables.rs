//! Code lists the linters and decoders look values up in: ISO 3166 countries, ISO 4217
//! currencies, GS1's PackageTypeCode list and GS1 prefixes (which member organisation issued a
//! number). Each list is sorted so lookups can binary-search it.

/// ISO 3166-1 countries: numeric code and alpha-2 code, sorted by numeric code.
pub(crate) const ISO3166: &[(&str, &str)] = &[
    ("004", "AF"), ("008", "AL"), ("010", "AQ"), ("012", "DZ"), ("016", "AS"), ("020", "AD"),
    ("024", "AO"), ("028", "AG"), ("031", "AZ"), ("032", "AR"), ("036", "AU"), ("040", "AT"),
    ("044", "BS"), ("048", "BH"), ("050", "BD"), ("051", "AM"), ("052", "BB"), ("056", "BE"),
    ("060", "BM"), ("064", "BT"), ("068", "BO"), ("070", "BA"), ("072", "BW"), ("074", "BV"),
    ("076", "BR"), ("084", "BZ"), ("086", "IO"), ("090", "SB"), ("092", "VG"), ("096", "BN"),
    ("100", "BG"), ("104", "MM"), ("108", "BI"), ("112", "BY"), ("116", "KH"), ("120", "CM"),
    ("124", "CA"), ("132", "CV"), ("136", "KY"), ("140", "CF"), ("144", "LK"), ("148", "TD"),
    ("152", "CL"), ("156", "CN"), ("158", "TW"), ("162", "CX"), ("166", "CC"), ("170", "CO"),
    ("174", "KM"), ("175", "YT"), ("178", "CG"), ("180", "CD"), ("184", "CK"), ("188", "CR"),
    ("191", "HR"), ("192", "CU"), ("196", "CY"), ("203", "CZ"), ("204", "BJ"), ("208", "DK"),
    ("212", "DM"), ("214", "DO"), ("218", "EC"), ("222", "SV"), ("226", "GQ"), ("231", "ET"),
    ("232", "ER"), ("233", "EE"), ("234", "FO"), ("238", "FK"), ("239", "GS"), ("242", "FJ"),
    ("246", "FI"), ("248", "AX"), ("250", "FR"), ("254", "GF"), ("258", "PF"), ("260", "TF"),
    ("262", "DJ"), ("266", "GA"), ("268", "GE"), ("270", "GM"), ("275", "PS"), ("276", "DE"),
    ("288", "GH"), ("292", "GI"), ("296", "KI"), ("300", "GR"), ("304", "GL"), ("308", "GD"),
    ("312", "GP"), ("316", "GU"), ("320", "GT"), ("324", "GN"), ("328", "GY"), ("332", "HT"),
    ("334", "HM"), ("336", "VA"), ("340", "HN"), ("344", "HK"), ("348", "HU"), ("352", "IS"),
    ("356", "IN"), ("360", "ID"), ("364", "IR"), ("368", "IQ"), ("372", "IE"), ("376", "IL"),
    ("380", "IT"), ("384", "CI"), ("388", "JM"), ("392", "JP"), ("398", "KZ"), ("400", "JO"),
    ("404", "KE"), ("408", "KP"), ("410", "KR"), ("414", "KW"), ("417", "KG"), ("418", "LA"),
    ("422", "LB"), ("426", "LS"), ("428", "LV"), ("430", "LR"), ("434", "LY"), ("438", "LI"),
    ("440", "LT"), ("442", "LU"), ("446", "MO"), ("450", "MG"), ("454", "MW"), ("458", "MY"),
    ("462", "MV"), ("466", "ML"), ("470", "MT"), ("474", "MQ"), ("478", "MR"), ("480", "MU"),
    ("484", "MX"), ("492", "MC"), ("496", "MN"), ("498", "MD"), ("499", "ME"), ("500", "MS"),
    ("504", "MA"), ("508", "MZ"), ("512", "OM"), ("516", "NA"), ("520", "NR"), ("524", "NP"),
    ("528", "NL"), ("531", "CW"), ("533", "AW"), ("534", "SX"), ("535", "BQ"), ("540", "NC"),
    ("548", "VU"), ("554", "NZ"), ("558", "NI"), ("562", "NE"), ("566", "NG"), ("570", "NU"),
    ("574", "NF"), ("578", "NO"), ("580", "MP"), ("581", "UM"), ("583", "FM"), ("584", "MH"),
    ("585", "PW"), ("586", "PK"), ("591", "PA"), ("598", "PG"), ("600", "PY"), ("604", "PE"),
    ("608", "PH"), ("612", "PN"), ("616", "PL"), ("620", "PT"), ("624", "GW"), ("626", "TL"),
    ("630", "PR"), ("634", "QA"), ("638", "RE"), ("642", "RO"), ("643", "RU"), ("646", "RW"),
    ("652", "BL"), ("654", "SH"), ("659", "KN"), ("660", "AI"), ("662", "LC"), ("663", "MF"),
    ("666", "PM"), ("670", "VC"), ("674", "SM"), ("678", "ST"), ("682", "SA"), ("686", "SN"),
    ("688", "RS"), ("690", "SC"), ("694", "SL"), ("702", "SG"), ("703", "SK"), ("704", "VN"),
    ("705", "SI"), ("706", "SO"), ("710", "ZA"), ("716", "ZW"), ("724", "ES"), ("728", "SS"),
    ("729", "SD"), ("732", "EH"), ("740", "SR"), ("744", "SJ"), ("748", "SZ"), ("752", "SE"),
    ("756", "CH"), ("760", "SY"), ("762", "TJ"), ("764", "TH"), ("768", "TG"), ("772", "TK"),
    ("776", "TO"), ("780", "TT"), ("784", "AE"), ("788", "TN"), ("792", "TR"), ("795", "TM"),
    ("796", "TC"), ("798", "TV"), ("800", "UG"), ("804", "UA"), ("807", "MK"), ("818", "EG"),
    ("826", "GB"), ("831", "GG"), ("832", "JE"), ("833", "IM"), ("834", "TZ"), ("840", "US"),
    ("850", "VI"), ("854", "BF"), ("858", "UY"), ("860", "UZ"), ("862", "VE"), ("876", "WF"),
    ("882", "WS"), ("887", "YE"), ("894", "ZM"),
];

/// ISO 4217 currencies: numeric code and alphabetic code, sorted by numeric code.
pub(crate) const ISO4217: &[(&str, &str)] = &[
    ("008", "ALL"), ("012", "DZD"), ("032", "ARS"), ("036", "AUD"), ("044", "BSD"), ("048", "BHD"),
    ("050", "BDT"), ("051", "AMD"), ("052", "BBD"), ("060", "BMD"), ("064", "BTN"), ("068", "BOB"),
    ("072", "BWP"), ("084", "BZD"), ("090", "SBD"), ("096", "BND"), ("104", "MMK"), ("108", "BIF"),
    ("116", "KHR"), ("124", "CAD"), ("132", "CVE"), ("136", "KYD"), ("144", "LKR"), ("152", "CLP"),
    ("156", "CNY"), ("170", "COP"), ("174", "KMF"), ("188", "CRC"), ("192", "CUP"), ("203", "CZK"),
    ("208", "DKK"), ("214", "DOP"), ("222", "SVC"), ("230", "ETB"), ("232", "ERN"), ("238", "FKP"),
    ("242", "FJD"), ("262", "DJF"), ("270", "GMD"), ("292", "GIP"), ("320", "GTQ"), ("324", "GNF"),
    ("328", "GYD"), ("332", "HTG"), ("340", "HNL"), ("344", "HKD"), ("348", "HUF"), ("352", "ISK"),
    ("356", "INR"), ("360", "IDR"), ("364", "IRR"), ("368", "IQD"), ("376", "ILS"), ("388", "JMD"),
    ("392", "JPY"), ("398", "KZT"), ("400", "JOD"), ("404", "KES"), ("408", "KPW"), ("410", "KRW"),
    ("414", "KWD"), ("417", "KGS"), ("418", "LAK"), ("422", "LBP"), ("426", "LSL"), ("430", "LRD"),
    ("434", "LYD"), ("446", "MOP"), ("454", "MWK"), ("458", "MYR"), ("462", "MVR"), ("480", "MUR"),
    ("484", "MXN"), ("496", "MNT"), ("498", "MDL"), ("504", "MAD"), ("512", "OMR"), ("516", "NAD"),
    ("524", "NPR"), ("532", "ANG"), ("533", "AWG"), ("548", "VUV"), ("554", "NZD"), ("558", "NIO"),
    ("566", "NGN"), ("578", "NOK"), ("586", "PKR"), ("590", "PAB"), ("598", "PGK"), ("600", "PYG"),
    ("604", "PEN"), ("608", "PHP"), ("634", "QAR"), ("643", "RUB"), ("646", "RWF"), ("654", "SHP"),
    ("682", "SAR"), ("690", "SCR"), ("694", "SLL"), ("702", "SGD"), ("704", "VND"), ("706", "SOS"),
    ("710", "ZAR"), ("728", "SSP"), ("748", "SZL"), ("752", "SEK"), ("756", "CHF"), ("760", "SYP"),
    ("764", "THB"), ("776", "TOP"), ("780", "TTD"), ("784", "AED"), ("788", "TND"), ("800", "UGX"),
    ("807", "MKD"), ("818", "EGP"), ("826", "GBP"), ("834", "TZS"), ("840", "USD"), ("858", "UYU"),
    ("860", "UZS"), ("882", "WST"), ("886", "YER"), ("901", "TWD"), ("924", "ZWG"), ("925", "SLE"),
    ("926", "VED"), ("927", "UYW"), ("928", "VES"), ("929", "MRU"), ("930", "STN"), ("931", "CUC"),
    ("932", "ZWL"), ("933", "BYN"), ("934", "TMT"), ("936", "GHS"), ("938", "SDG"), ("940", "UYI"),
    ("941", "RSD"), ("943", "MZN"), ("944", "AZN"), ("946", "RON"), ("947", "CHE"), ("948", "CHW"),
    ("949", "TRY"), ("950", "XAF"), ("951", "XCD"), ("952", "XOF"), ("953", "XPF"), ("955", "XBA"),
    ("956", "XBB"), ("957", "XBC"), ("958", "XBD"), ("959", "XAU"), ("960", "XDR"), ("961", "XAG"),
    ("962", "XPT"), ("963", "XTS"), ("964", "XPD"), ("965", "XUA"), ("967", "ZMW"), ("968", "SRD"),
    ("969", "MGA"), ("970", "COU"), ("971", "AFN"), ("972", "TJS"), ("973", "AOA"), ("975", "BGN"),
    ("976", "CDF"), ("977", "BAM"), ("978", "EUR"), ("979", "MXV"), ("980", "UAH"), ("981", "GEL"),
    ("984", "BOV"), ("985", "PLN"), ("986", "BRL"), ("990", "CLF"), ("994", "XSU"), ("997", "USN"),
    ("999", "XXX"),
];

/// GS1's PackageTypeCode list (UN/ECE Recommendation 21 plus GS1's own codes), sorted.
pub(crate) const PACKAGE_TYPES: &[&str] = &[
    "1A", "1B", "1D", "1F", "1G", "1W", "200", "201", "202", "203", "204", "205", "206", "210",
    "211", "212", "2C", "3A", "3H", "43", "44", "4A", "4B", "4C", "4D", "4F", "4G", "4H", "5H",
    "5L", "5M", "6H", "6P", "7A", "7B", "8", "8A", "8B", "8C", "9", "AA", "AB", "AC", "AD", "AF",
    "AG", "AH", "AI", "AJ", "AL", "AM", "AP", "APE", "AT", "AV", "B4", "BB", "BC", "BD", "BE",
    "BF", "BG", "BGE", "BH", "BI", "BJ", "BK", "BL", "BM", "BME", "BN", "BO", "BP", "BQ", "BR",
    "BRI", "BS", "BT", "BU", "BV", "BW", "BX", "BY", "BZ", "CA", "CB", "CBL", "CC", "CCE", "CD",
    "CE", "CF", "CG", "CH", "CI", "CJ", "CK", "CL", "CM", "CN", "CO", "CP", "CQ", "CR", "CS",
    "CT", "CU", "CV", "CW", "CX", "CY", "CZ", "DA", "DB", "DC", "DG", "DH", "DI", "DJ", "DK",
    "DL", "DM", "DN", "DP", "DPE", "DR", "DS", "DT", "DU", "DV", "DW", "DX", "DY", "E1", "E2",
    "E3", "EC", "ED", "EE", "EF", "EG", "EH", "EI", "EN", "FB", "FC", "FD", "FE", "FI", "FL",
    "FO", "FOB", "FP", "FPE", "FR", "FT", "FW", "FX", "GB", "GI", "GL", "GR", "GU", "GY", "GZ",
    "HA", "HB", "HC", "HG", "HN", "HR", "IA", "IB", "IC", "ID", "IE", "IF", "IG", "IH", "IK",
    "IL", "IN", "IZ", "JB", "JC", "JG", "JR", "JT", "JY", "KG", "KI", "LAB", "LE", "LG", "LT",
    "LU", "LV", "LZ", "MA", "MB", "MC", "ME", "MPE", "MR", "MS", "MT", "MW", "MX", "NA", "NE",
    "NF", "NG", "NS", "NT", "NU", "NV", "OA", "OB", "OC", "OD", "OE", "OF", "OK", "OPE", "OT",
    "OU", "P2", "PA", "PAE", "PB", "PC", "PD", "PE", "PF", "PG", "PH", "PI", "PJ", "PK", "PL",
    "PLP", "PN", "PO", "POP", "PP", "PPE", "PR", "PT", "PU", "PUE", "PV", "PX", "PY", "PZ", "QA",
    "QB", "QC", "QD", "QF", "QG", "QH", "QJ", "QK", "QL", "QM", "QN", "QP", "QQ", "QR", "QS",
    "RB1", "RB2", "RB3", "RCB", "RD", "RG", "RJ", "RK", "RL", "RO", "RT", "RZ", "S1", "SA", "SB",
    "SC", "SD", "SE", "SEC", "SH", "SI", "SK", "SL", "SM", "SO", "SP", "SS", "ST", "STL", "SU",
    "SV", "SW", "SX", "SY", "SZ", "T1", "TB", "TC", "TD", "TE", "TEV", "TG", "THE", "TI", "TK",
    "TL", "TN", "TO", "TR", "TRE", "TS", "TT", "TTE", "TU", "TV", "TW", "TWE", "TY", "TZ", "UC",
    "UN", "UUE", "VA", "VG", "VI", "VK", "VL", "VN", "VO", "VP", "VQ", "VR", "VS", "VY", "WA",
    "WB", "WC", "WD", "WF", "WG", "WH", "WJ", "WK", "WL", "WM", "WN", "WP", "WQ", "WR", "WRP",
    "WS", "WT", "WU", "WV", "WW", "WX", "WY", "WZ", "X11", "X12", "X15", "X16", "X17", "X18",
    "X19", "X20", "X3", "XA", "XB", "XC", "XD", "XF", "XG", "XH", "XJ", "XK", "YA", "YB", "YC",
    "YD", "YF", "YG", "YH", "YJ", "YK", "YL", "YM", "YN", "YP", "YQ", "YR", "YS", "YT", "YV",
    "YW", "YX", "YY", "YZ", "ZA", "ZB", "ZC", "ZD", "ZF", "ZG", "ZH", "ZJ", "ZK", "ZL", "ZM",
    "ZN", "ZP", "ZQ", "ZR", "ZS", "ZT", "ZU", "ZV", "ZW", "ZX", "ZY", "ZZ",
];

/// GS1 prefixes (GS1 General Specifications, "GS1 prefixes"): for numbers of 13 digits (a GTIN-12
/// or GTIN-13 seen as 13 digits, a GLN, or an SSCC or GTIN-14 without its first digit), the first
/// `len` digits between `from` and `to` say who issued the number. Longer prefixes come first:
/// the first match wins.
pub(crate) const GS1_PREFIXES: &[(usize, u32, u32, &str)] = &[
    (7, 0, 0, "Used to issue Restricted Circulation Numbers within a company"),
    (7, 1, 99, "Unused to avoid collision with GTIN-8"),
    (5, 1, 9, "GS1 US"),
    (4, 1, 9, "GS1 US"),
    (3, 1, 19, "GS1 US"),
    (3, 20, 29, "Used to issue Restricted Circulation Numbers within a geographic region (MO defined)"),
    (3, 30, 39, "GS1 US"),
    (3, 40, 49, "Used to issue GS1 Restricted Circulation Numbers within a company"),
    (3, 50, 59, "GS1 US reserved for future use"),
    (3, 60, 139, "GS1 US"),
    (3, 200, 299, "Used to issue GS1 Restricted Circulation Numbers within a geographic region (MO defined)"),
    (3, 300, 379, "GS1 France"),
    (3, 380, 380, "GS1 Bulgaria"),
    (3, 383, 383, "GS1 Slovenija"),
    (3, 385, 385, "GS1 Croatia"),
    (3, 387, 387, "GS1 BIH (Bosnia-Herzegovina)"),
    (3, 389, 389, "GS1 Montenegro"),
    (3, 390, 390, "GS1 Kosovo"),
    (3, 400, 440, "GS1 Germany"),
    (3, 450, 459, "GS1 Japan"),
    (3, 460, 469, "GS1 Russia"),
    (3, 470, 470, "GS1 Kyrgyzstan"),
    (3, 471, 471, "GS1 Chinese Taipei"),
    (3, 474, 474, "GS1 Estonia"),
    (3, 475, 475, "GS1 Latvia"),
    (3, 476, 476, "GS1 Azerbaijan"),
    (3, 477, 477, "GS1 Lithuania"),
    (3, 478, 478, "GS1 Uzbekistan"),
    (3, 479, 479, "GS1 Sri Lanka"),
    (3, 480, 480, "GS1 Philippines"),
    (3, 481, 481, "GS1 Belarus"),
    (3, 482, 482, "GS1 Ukraine"),
    (3, 483, 483, "GS1 Turkmenistan"),
    (3, 484, 484, "GS1 Moldova"),
    (3, 485, 485, "GS1 Armenia"),
    (3, 486, 486, "GS1 Georgia"),
    (3, 487, 487, "GS1 Kazakstan"),
    (3, 488, 488, "GS1 Tajikistan"),
    (3, 489, 489, "GS1 Hong Kong, China"),
    (3, 490, 499, "GS1 Japan"),
    (3, 500, 509, "GS1 UK"),
    (3, 520, 521, "GS1 Association Greece"),
    (3, 528, 528, "GS1 Lebanon"),
    (3, 529, 529, "GS1 Cyprus"),
    (3, 530, 530, "GS1 Albania"),
    (3, 531, 531, "GS1 North Macedonia"),
    (3, 535, 535, "GS1 Malta"),
    (3, 539, 539, "GS1 Ireland"),
    (3, 540, 549, "GS1 Belgium & Luxembourg"),
    (3, 560, 560, "GS1 Portugal"),
    (3, 569, 569, "GS1 Iceland"),
    (3, 570, 579, "GS1 Denmark"),
    (3, 590, 590, "GS1 Poland"),
    (3, 594, 594, "GS1 Romania"),
    (3, 599, 599, "GS1 Hungary"),
    (3, 600, 601, "GS1 South Africa"),
    (3, 603, 603, "GS1 Ghana"),
    (3, 604, 604, "GS1 Senegal"),
    (3, 607, 607, "GS1 Oman"),
    (3, 608, 608, "GS1 Bahrain"),
    (3, 609, 609, "GS1 Mauritius"),
    (3, 611, 611, "GS1 Morocco"),
    (3, 613, 613, "GS1 Algeria"),
    (3, 615, 615, "GS1 Nigeria"),
    (3, 616, 616, "GS1 Kenya"),
    (3, 617, 617, "GS1 Cameroon"),
    (3, 618, 618, "GS1 Côte d'Ivoire"),
    (3, 619, 619, "GS1 Tunisia"),
    (3, 620, 620, "GS1 Tanzania"),
    (3, 621, 621, "GS1 Syria"),
    (3, 622, 622, "GS1 Egypt"),
    (3, 623, 623, "GS1 Brunei"),
    (3, 624, 624, "GS1 Libya"),
    (3, 625, 625, "GS1 Jordan"),
    (3, 626, 626, "GS1 Iran"),
    (3, 627, 627, "GS1 Kuwait"),
    (3, 628, 628, "GS1 Saudi Arabia"),
    (3, 629, 629, "GS1 Emirates"),
    (3, 630, 630, "GS1 Qatar"),
    (3, 631, 631, "GS1 Namibia"),
    (3, 640, 649, "GS1 Finland"),
    (3, 680, 681, "GS1 China"),
    (3, 690, 699, "GS1 China"),
    (3, 700, 709, "GS1 Norway"),
    (3, 729, 729, "GS1 Israel"),
    (3, 730, 739, "GS1 Sweden"),
    (3, 740, 740, "GS1 Guatemala"),
    (3, 741, 741, "GS1 El Salvador"),
    (3, 742, 742, "GS1 Honduras"),
    (3, 743, 743, "GS1 Nicaragua"),
    (3, 744, 744, "GS1 Costa Rica"),
    (3, 745, 745, "GS1 Panama"),
    (3, 746, 746, "GS1 Republica Dominicana"),
    (3, 750, 750, "GS1 Mexico"),
    (3, 754, 755, "GS1 Canada"),
    (3, 759, 759, "GS1 Venezuela"),
    (3, 760, 769, "GS1 Schweiz, Suisse, Svizzera"),
    (3, 770, 771, "GS1 Colombia"),
    (3, 773, 773, "GS1 Uruguay"),
    (3, 775, 775, "GS1 Peru"),
    (3, 777, 777, "GS1 Bolivia"),
    (3, 778, 779, "GS1 Argentina"),
    (3, 780, 780, "GS1 Chile"),
    (3, 784, 784, "GS1 Paraguay"),
    (3, 786, 786, "GS1 Ecuador"),
    (3, 789, 790, "GS1 Brasil"),
    (3, 800, 839, "GS1 Italy"),
    (3, 840, 849, "GS1 Spain"),
    (3, 850, 850, "GS1 Cuba"),
    (3, 858, 858, "GS1 Slovakia"),
    (3, 859, 859, "GS1 Czech"),
    (3, 860, 860, "GS1 Serbia"),
    (3, 865, 865, "GS1 Mongolia"),
    (3, 867, 867, "GS1 North Korea"),
    (3, 868, 869, "GS1 Türkiye"),
    (3, 870, 879, "GS1 Netherlands"),
    (3, 880, 881, "GS1 South Korea"),
    (3, 883, 883, "GS1 Myanmar"),
    (3, 884, 884, "GS1 Cambodia"),
    (3, 885, 885, "GS1 Thailand"),
    (3, 888, 888, "GS1 Singapore"),
    (3, 890, 890, "GS1 India"),
    (3, 893, 893, "GS1 Vietnam"),
    (3, 896, 896, "GS1 Pakistan"),
    (3, 899, 899, "GS1 Indonesia"),
    (3, 900, 919, "GS1 Austria"),
    (3, 930, 939, "GS1 Australia"),
    (3, 940, 949, "GS1 New Zealand"),
    (3, 950, 950, "GS1 Global Office"),
    (3, 951, 951, "Global Office - General Manager Number"),
    (3, 952, 952, "Used for demonstrations and examples of the GS1 system"),
    (3, 955, 955, "GS1 Malaysia"),
    (3, 958, 958, "GS1 Macao, China"),
    (3, 960, 969, "Global Office - GTIN-8"),
    (3, 977, 977, "Serial publications (ISSN)"),
    (3, 978, 979, "Bookland (ISBN)"),
    (3, 980, 980, "Refund receipts"),
    (3, 981, 983, "GS1 coupon identification for common currency areas"),
    (3, 990, 999, "GS1 coupon identification"),
];

/// Whether `code` is an ISO 3166 numeric country code.
pub(crate) fn is_iso3166(code: &[u8]) -> bool {
    ISO3166.binary_search_by(|(n, _)| n.as_bytes().cmp(code)).is_ok()
}

/// Whether `code` is an ISO 3166 alpha-2 country code.
pub(crate) fn is_iso3166_alpha2(code: &[u8]) -> bool {
    ISO3166.iter().any(|(_, a)| a.as_bytes() == code)
}

/// The ISO 4217 alphabetic code of the numeric currency code `code`.
pub fn iso4217_alpha(code: &str) -> Option<&'static str> {
    ISO4217
        .binary_search_by(|(n, _)| n.cmp(&code))
        .ok()
        .and_then(|i| ISO4217.get(i))
        .map(|(_, a)| *a)
}

pub(crate) fn is_package_type(code: &[u8]) -> bool {
    PACKAGE_TYPES
        .binary_search_by(|p| p.as_bytes().cmp(code))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_and_unique() {
        assert!(ISO3166.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(ISO4217.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(PACKAGE_TYPES.windows(2).all(|w| w[0] < w[1]));
        let mut alpha: Vec<_> = ISO3166.iter().map(|(_, a)| a).collect();
        alpha.sort();
        alpha.dedup();
        assert_eq!(alpha.len(), ISO3166.len());
        assert_eq!(ISO3166.len(), 249);
    }

    #[test]
    fn lookups() {
        assert!(is_iso3166(b"528"));
        assert!(!is_iso3166(b"987"));
        assert!(is_iso3166_alpha2(b"FR"));
        assert!(!is_iso3166_alpha2(b"AA"));
        assert_eq!(iso4217_alpha("710"), Some("ZAR"));
        assert_eq!(iso4217_alpha("978"), Some("EUR"));
        assert_eq!(iso4217_alpha("987"), None);
        assert!(is_package_type(b"X11"));
        assert!(!is_package_type(b"1AA"));
    }
}
