//! Every sentence the tag can answer a call with, in one list, each with a short stable code.
//!
//! The production tag (`tag` without `debug`, `cfg(lean)`) carries the codes only: a refusal
//! answers `field: #12` (or `#70: #15` where the field is a member's path, `order.currency`),
//! and the loader turns each `#12` into its text from `utt_texts.js`, which `cargo xtask build`
//! writes from [`ALL`], so every code has its text by construction. Every other build (the debug tag, the collector, the tests) carries the
//! sentences themselves, so their wording never changes.
//!
//! A code is never reused for another sentence: a partner's log may hold it. Add new texts at
//! the end with the next number.

/// Makes one constant per text (the code in the production tag, the sentence elsewhere) and
/// [`ALL`], the list the loader's table is written from.
macro_rules! texts {
    ($($name:ident = $code:literal, $text:literal;)*) => {
        $(
            #[doc = $text]
            pub const $name: &str = if cfg!(lean) { concat!("#", $code) } else { $text };
        )*
        /// Every text: `(code, sentence)`.
        pub const ALL: &[(&str, &str)] = &[$(($code, $text)),*];
    };
}

/// A text only the debug build shows (the debug page's send log and the console's notes): empty
/// in the production tag, so its bytes are not downloaded by every visitor.
#[macro_export]
macro_rules! debug_text {
    ($text:literal) => {
        if cfg!(lean) {
            ""
        } else {
            $text
        }
    };
}

texts! {
    // Members of events, orders and clicks (`wire`).
    REQUIRED = "1", "is required";
    NOT_STRING = "2", "must be a string";
    EMPTY = "3", "must not be empty";
    TOO_LONG = "4", "too long";
    CONTROL = "5", "must not contain control characters";
    NOT_OBJECT = "6", "must be an object";
    NOT_NUMBER = "7", "must be a number or a decimal string";
    NOT_DECIMAL = "8", "must be a non-negative decimal like 49.90, without exponent";
    TOO_LARGE = "9", "too large";
    CLICK_NOT_OBJECT = "10", "each click must be an object";
    UTM_KEY = "11", "unknown UTM key";
    UTM_NOT_STRINGS = "12", "values must be strings";
    UTM_VALUE = "13", "value too long or has control characters";
    CLICK_AT = "14", "must be a millisecond timestamp";
    CURRENCY = "15", "must be an ISO 4217 code like EUR";
    TOO_MANY_ITEMS = "16", "too many items";
    NOT_ARRAY = "17", "must be an array";
    CUSTOMER_STATUS = "18", "must be \"new\" or \"returning\"";
    ITEM_NOT_OBJECT = "19", "each item must be an object";
    QUANTITY = "20", "must be a whole number";
    // The calls (`command`).
    CALL = "21", "must be called as utt(name, ...args)";
    COMMAND_NAME = "22", "the first argument must be a command name";
    IDENTIFY_OBJECT = "23", "must be an object with customerId and/or email";
    SHORT_STRING = "24", "must be a short string";
    NOT_EMAIL = "25", "is not an email address";
    IDENTIFY_NEEDS = "26", "needs customerId or email";
    CONSENT_CHOICE = "27", "must be 'granted' or 'denied'";
    EVENT_NEEDS_NAME = "28", "needs a name: utt('event', name, props?)";
    EVENT_NAME = "29", "name must be 1 to 128 characters";
    UNKNOWN_COMMAND = "30", "unknown command";
    // `init`'s options (`config`).
    SITE = "31", "is required: letters, digits, '-', '_' or '.'";
    COLLECTOR_STRING = "32", "must be a URL string";
    COLLECTOR_URL = "33", "must be an http(s) URL or a path";
    WINDOW_DAYS = "34", "must be a whole number of days from 1 to 395";
    SESSION_TIMEOUT = "35", "must be 1 to 1440";
    CLICK_PARAMS = "36", "must be an object of parameter: network";
    CLICK_PARAMS_MAX = "37", "at most 32 parameters";
    PARAM_NAMES = "38", "parameter names must be letters, digits, '-', '_' or '.'";
    STORAGE = "39", "must be \"cookie+local\", \"cookie\", \"local\" or \"none\"";
    COOKIE_DOMAIN = "40", "must be \"auto\" or a domain";
    LINK_DOMAINS = "41", "must be a list of at most 16 domains";
    CONSENT_OPTION = "42", "must be \"granted\" or \"denied\"";
    WHILE_DENIED = "43", "must be \"wait\" or \"drop\"";
    UNKNOWN_OPTION = "44", "unknown option";
    FLAG = "45", "must be true or false";
    TOKEN = "46", "must be letters, digits, '-', '_' or '.'";
    // The JSON reader (`json`).
    JSON_EOF = "47", "unexpected end of JSON";
    JSON_SYNTAX = "48", "invalid JSON";
    JSON_DEEP = "49", "JSON nested too deeply";
    JSON_ESCAPE = "50", "invalid escape in JSON string";
    JSON_TRAILING = "51", "unexpected text after JSON value";
    // Click values (`click`).
    CLICK_EMPTY = "52", "empty value";
    CLICK_LONG = "53", "value too long";
    CLICK_CHAR = "54", "character outside the safe set";
    CLICK_ENCODING = "55", "malformed percent-encoding";
    CLICK_TAMPERED = "56", "tampered, or from another browser";
    CLICK_EXPIRED = "57", "expired";
    // The browser shell (`web`).
    BUSY = "58", "busy; try again";
    NOT_READY = "59", "call utt('init', {site: …}) first";
    ALREADY_INIT = "60", "already initialised; init runs once per page";
    NOT_HASHED = "61", "could not be hashed (SubtleCrypto needs https or localhost)";
    UNKNOWN_OP = "62", "unknown operation";
    QUEUE_FULL = "63", "queue full";
    // The paths of refused members (`field: reason`): codes in the production tag too, so the
    // answer `#70: #15` costs no path text in the wasm.
    AT_CLICKS_VALUE = "64", "clicks.value";
    AT_CLICKS_UTM = "65", "clicks.utm";
    AT_CLICKS_PARAM = "66", "clicks.param";
    AT_CLICKS_NETWORK = "67", "clicks.network";
    AT_CLICKS_AT = "68", "clicks.at";
    AT_CLICKS_PATH = "69", "clicks.path";
    AT_CLICKS_REF = "70", "clicks.ref";
    AT_ORDER_ORDER_ID = "71", "order.orderId";
    AT_ORDER_CURRENCY = "72", "order.currency";
    AT_ORDER_ITEMS = "73", "order.items";
    AT_ORDER_CUSTOMER_STATUS = "74", "order.customerStatus";
    AT_ORDER_AMOUNT = "75", "order.amount";
    AT_ORDER_PROMO_CODE = "76", "order.promoCode";
    AT_ORDER_DISCOUNT = "77", "order.discount";
    AT_ORDER_CUSTOM = "78", "order.custom";
    AT_ORDER_ITEMS_QUANTITY = "79", "order.items.quantity";
    AT_ORDER_ITEMS_SKU = "80", "order.items.sku";
    AT_ORDER_ITEMS_NAME = "81", "order.items.name";
    AT_ORDER_ITEMS_PRICE = "82", "order.items.price";
    AT_ORDER_ITEMS_CATEGORY = "83", "order.items.category";
    AT_IDENTIFY_CUSTOMER_ID = "84", "identify.customerId";
    AT_IDENTIFY_EMAIL = "85", "identify.email";
    AT_EVENT_PROPS = "86", "event.props";
}

#[cfg(test)]
mod tests {
    use super::ALL;

    #[test]
    fn every_code_is_unique_short_and_has_a_sentence() {
        let mut codes: alloc::vec::Vec<&str> = ALL.iter().map(|(c, _)| *c).collect();
        for (code, text) in ALL {
            assert!(
                !code.is_empty() && code.len() <= 3 && code.bytes().all(|b| b.is_ascii_digit()),
                "{code}"
            );
            assert!(!text.is_empty() && !text.contains('#'), "{code}: {text:?}");
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ALL.len(), "a code is used twice");
        // Numbered in order, none skipped: the next text takes the next number.
        for (i, (code, _)) in ALL.iter().enumerate() {
            assert_eq!(code.parse::<usize>().ok(), Some(i + 1), "{code}");
        }
    }

    #[test]
    fn outside_the_production_tag_the_constants_are_the_sentences() {
        assert_eq!(super::CURRENCY, "must be an ISO 4217 code like EUR");
        assert_eq!(super::QUEUE_FULL, "queue full");
        assert_eq!(crate::debug_text!("kept"), "kept");
    }
}
