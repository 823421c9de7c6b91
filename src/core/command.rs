//! The snippet's commands: `utt(name, ...args)` calls, read from their JSON form
//! `[name, arg, ...]`, with a clear reason for every unknown command or bad argument.

use alloc::string::String;

use super::config::Config;
use super::json::Json;
use super::text as t;
use super::wire::{self, limits, Invalid, Order};

/// One call of the `utt(...)` API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `utt('init', config)`
    Init(Config),
    /// `utt('pageview', props?)`
    PageView(Option<Json>),
    /// `utt('conversion', order)`
    Conversion(Order),
    /// `utt('identify', {customerId?, email?})`: the email already normalised, not yet hashed.
    Identify {
        /// The merchant's customer ID.
        customer_id: Option<String>,
        /// The normalised email address (hashed by the browser shell before it goes anywhere).
        email: Option<String>,
    },
    /// `utt('consent', 'granted' | 'denied')`
    Consent(bool),
    /// `utt('event', name, props?)`
    Event(String, Option<Json>),
    /// `utt('flush')`: send what is queued now.
    Flush,
}

const fn bad(field: &'static str, reason: &'static str) -> Invalid {
    Invalid { field, reason }
}

/// Reads `[name, args...]`, taking what it keeps out of `call`.
pub fn parse(call: &mut Json) -> Result<Command, Invalid> {
    let Json::Arr(args) = call else {
        return Err(bad("command", t::CALL));
    };
    let Some((Json::Str(name), rest)) = args.split_first_mut() else {
        return Err(bad("command", t::COMMAND_NAME));
    };
    let mut null = Json::Null;
    let (arg, more) = match rest.split_first_mut() {
        Some((a, m)) => (a, m),
        None => (&mut null, &mut [][..]),
    };
    Ok(match name.as_str() {
        "init" => Command::Init(Config::from_json(arg)?),
        "pageview" => Command::PageView(wire::props(Some(arg), "pageview")?),
        "conversion" => Command::Conversion(wire::read_order(arg)?),
        "identify" => {
            if arg.as_obj().is_none() {
                return Err(bad("identify", t::IDENTIFY_OBJECT));
            }
            let customer_id = match arg.get("customerId") {
                None | Some(Json::Null) => None,
                Some(Json::Num(n)) if n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()) => Some(n.clone()),
                Some(Json::Str(s)) if !s.is_empty() && s.len() <= limits::MAX_SHORT && !crate::core::has_control(s) => {
                    Some(s.clone())
                }
                Some(_) => return Err(bad(t::AT_IDENTIFY_CUSTOMER_ID, t::SHORT_STRING)),
            };
            let email = match arg.get("email") {
                None | Some(Json::Null) => None,
                Some(Json::Str(s)) => Some(normalize_email(s).ok_or(bad(t::AT_IDENTIFY_EMAIL, t::NOT_EMAIL))?),
                Some(_) => return Err(bad(t::AT_IDENTIFY_EMAIL, t::NOT_STRING)),
            };
            if customer_id.is_none() && email.is_none() {
                return Err(bad("identify", t::IDENTIFY_NEEDS));
            }
            Command::Identify { customer_id, email }
        }
        "consent" => match arg.as_str() {
            Some("granted") => Command::Consent(true),
            Some("denied") => Command::Consent(false),
            _ => return Err(bad("consent", t::CONSENT_CHOICE)),
        },
        "event" => {
            let n = arg.as_str().ok_or(bad("event", t::EVENT_NEEDS_NAME))?;
            if n.is_empty() || n.len() > limits::MAX_SHORT || crate::core::has_control(n) {
                return Err(bad("event", t::EVENT_NAME));
            }
            Command::Event(String::from(n), wire::props(more.first_mut(), t::AT_EVENT_PROPS)?)
        }
        "flush" => Command::Flush,
        _ => return Err(bad("command", t::UNKNOWN_COMMAND)),
    })
}

/// Normalises an email address the way ad platforms do before hashing: trimmed and lowercased
/// (ASCII only: Unicode case tables would cost the tag more than they are worth).
/// `None` if it does not look like `local@domain.tld`.
pub fn normalize_email(s: &str) -> Option<String> {
    let e = s.trim().to_ascii_lowercase();
    let (local, domain) = crate::core::split_byte(&e, b'@')?;
    let ok = !local.is_empty()
        && e.len() <= 254
        && domain.bytes().any(|b| b == b'.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !crate::core::has_control(&e)
        && !e.bytes().any(|b| matches!(b, b'<' | b'>' | b'"' | b',' | b' '))
        // Whitespace beyond ASCII (no-break and other Unicode spaces) is rare: decode only then.
        && (e.is_ascii() || !e.chars().any(char::is_whitespace))
        && !domain.bytes().any(|b| b == b'@');
    ok.then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::json::parse as json;

    fn run(text: &str) -> Result<Command, &'static str> {
        parse(&mut json(text).unwrap()).map_err(|e| e.field)
    }

    #[test]
    fn commands_and_their_errors() {
        assert!(matches!(run(r#"["init",{"site":"demo"}]"#), Ok(Command::Init(c)) if c.site == "demo"));
        assert_eq!(run(r#"["pageview"]"#), Ok(Command::PageView(None)));
        assert!(matches!(
            run(r#"["pageview",{"section":"a"}]"#),
            Ok(Command::PageView(Some(_)))
        ));
        assert!(
            matches!(run(r#"["conversion",{"orderId":"A1","amount":"9.90","currency":"EUR"}]"#),
            Ok(Command::Conversion(o)) if o.order_id == "A1" && o.amount.as_ref().unwrap().text == "9.90")
        );
        assert_eq!(
            run(r#"["identify",{"customerId":42,"email":"  Jane.Doe@Example.COM "}]"#),
            Ok(Command::Identify {
                customer_id: Some("42".into()),
                email: Some("jane.doe@example.com".into())
            })
        );
        assert_eq!(run(r#"["consent","granted"]"#), Ok(Command::Consent(true)));
        assert_eq!(run(r#"["consent","denied"]"#), Ok(Command::Consent(false)));
        assert_eq!(run(r#"["event","signup"]"#), Ok(Command::Event("signup".into(), None)));
        assert_eq!(run(r#"["flush"]"#), Ok(Command::Flush));

        let errors = [
            (r#"{}"#, "command"),
            (r#"[]"#, "command"),
            (r#"[42]"#, "command"),
            (r#"["purchase",{}]"#, "command"),
            (r#"["<img src=x onerror=alert(1)>"]"#, "command"),
            (r#"["init"]"#, "config"),
            (r#"["init",{"site":"demo","bogus":1}]"#, "config"),
            (r#"["pageview","home"]"#, "pageview"),
            (r#"["conversion"]"#, "order"),
            (r#"["conversion",{"amount":5}]"#, "order.orderId"),
            (r#"["conversion",{"orderId":"A","amount":"5,00"}]"#, "order.amount"),
            (r#"["conversion",{"orderId":"A","amount":1e21}]"#, "order.amount"),
            (r#"["identify","jane@example.com"]"#, "identify"),
            (r#"["identify",{}]"#, "identify"),
            (r#"["identify",{"email":"not-an-email"}]"#, "identify.email"),
            (r#"["identify",{"email":"a@b"}]"#, "identify.email"),
            (r#"["identify",{"customerId":{"x":1}}]"#, "identify.customerId"),
            (r#"["consent",true]"#, "consent"),
            (r#"["event"]"#, "event"),
            (r#"["event",""]"#, "event"),
            (r#"["event","x",[1]]"#, "event.props"),
        ];
        for (text, field) in errors {
            assert_eq!(run(text), Err(field), "{text}");
        }
        let huge = alloc::format!(r#"["event","x",{{"k":"{}"}}]"#, "a".repeat(10_000));
        assert_eq!(run(&huge), Err("event.props"));
    }

    #[test]
    fn emails_normalise() {
        let cases = [
            (" Jane.Doe@Example.com ", Some("jane.doe@example.com")),
            ("a@b.co", Some("a@b.co")),
            ("a@b", None),
            ("@b.co", None),
            ("a@@b.co", None),
            ("a b@c.de", None),
            ("<script>@x.io", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_email(input).as_deref(), want, "{input:?}");
        }
    }
}
