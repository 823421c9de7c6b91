//! Partner identities: who drove a click or owns a promo code, from a site's `[sites.partners]`
//! mapping. Pure functions over what the store keeps (a touch's landing query string, a
//! conversion's promo code), applied at read time like attribution: a changed mapping applies
//! to the stored history at once.

use std::collections::BTreeMap;

use serde::Deserialize;
use utt::core::url::{decode_component, query_pairs};

use crate::store::Touch;

/// A site's partner mapping (`[sites.partners]`); every table is optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Partners {
    /// Per network (`impact`) or click parameter (`irclickid`): the landing parameter whose
    /// value is the partner's ID on that network (`irpid`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// `"<network>:<partner ID>"` (`"impact:12345"`) → partner.
    #[serde(default)]
    pub ids: BTreeMap<String, String>,
    /// `"<click parameter>:<click ID>"` (`"ranSiteID:abc123"`) → partner.
    #[serde(default)]
    pub clicks: BTreeMap<String, String>,
    /// A click's `utm_source` (any case) → partner.
    #[serde(default)]
    pub utm_sources: BTreeMap<String, String>,
    /// Partner → display name (a partner without one is shown by its ID).
    #[serde(default)]
    pub names: BTreeMap<String, String>,
}

/// How a partner was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The network's partner parameter on the landing (`irpid`).
    Param,
    /// The click ID itself, listed in `clicks`.
    Click,
    /// The click's `utm_source`, listed in `utm_sources`.
    UtmSource,
    /// The conversion's promo code (`promo_codes`).
    PromoCode,
}

impl Via {
    /// The name the read API reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Param => "param",
            Via::Click => "click",
            Via::UtmSource => "utm_source",
            Via::PromoCode => "promo_code",
        }
    }
}

/// A partner as the read API names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    /// Its stable ID: the partner a mapping names, or `<network>:<partner ID>` for a partner
    /// parameter no `ids` entry maps.
    pub id: String,
    /// Its display name: `names[id]`, else the ID when a mapping named it; `None` for an
    /// unmapped partner parameter (a partner nobody has named yet).
    pub name: Option<String>,
    /// How it was recognised.
    pub via: Via,
}

/// The longest partner ID taken from a landing parameter.
const MAX_ID: usize = 128;

impl Partners {
    fn named(&self, id: &str, via: Via) -> Partner {
        Partner {
            id: id.to_string(),
            name: Some(self.names.get(id).map_or(id, String::as_str).to_string()),
            via,
        }
    }

    /// The landing parameter naming the partner for a click: configured for its parameter
    /// (any case) first, else for its network.
    fn param_for(&self, touch: &Touch) -> Option<&str> {
        let by_param = self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(&touch.param));
        by_param
            .or_else(|| self.params.get_key_value(&touch.network))
            .map(|(_, p)| p.as_str())
    }

    /// The partner of a click, in this order: the network's partner parameter on the landing
    /// (mapped by `ids`, else `<network>:<ID>` without a name); the click ID listed in
    /// `clicks`; the landing's `utm_source` listed in `utm_sources`; else none.
    pub fn of_click(&self, touch: &Touch) -> Option<Partner> {
        let pairs: Vec<(String, String)> = query_pairs(&format!("?{}", touch.landing))
            .into_iter()
            .filter_map(|(k, v)| Some((decode_component(k).ok()?, decode_component(v).ok()?)))
            .collect();
        let first = |name: &str| {
            pairs
                .iter()
                .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.trim().is_empty())
                .map(|(_, v)| v.trim())
        };
        if let Some(raw) = self.param_for(touch).and_then(first) {
            if raw.len() <= MAX_ID && !raw.chars().any(char::is_control) {
                let key = format!("{}:{raw}", touch.network);
                return Some(match self.ids.get(&key) {
                    Some(p) => self.named(p, Via::Param),
                    None => Partner {
                        id: key,
                        name: None,
                        via: Via::Param,
                    },
                });
            }
        }
        let click = self.clicks.iter().find(|(k, _)| {
            k.split_once(':')
                .is_some_and(|(p, v)| p.eq_ignore_ascii_case(&touch.param) && v == touch.value)
        });
        if let Some((_, p)) = click {
            return Some(self.named(p, Via::Click));
        }
        let source = first("utm_source")?;
        let (_, p) = self.utm_sources.iter().find(|(k, _)| k.eq_ignore_ascii_case(source))?;
        Some(self.named(p, Via::UtmSource))
    }

    /// The partner a promo code credits (`partner` is what `promo_codes` maps the code to).
    pub fn of_promo(&self, partner: &str) -> Partner {
        self.named(partner, Via::PromoCode)
    }

    /// Checks what serde cannot; the error names the site and the key.
    pub fn check(&self, site: &str, promo_codes: &BTreeMap<String, String>) -> Result<(), String> {
        let at =
            |table: &str, key: &str, what: &str| format!("config: site {site:?}: partners.{table} key {key:?} {what}");
        let name_ok = |v: &str| !v.trim().is_empty() && v.len() <= MAX_ID && !v.chars().any(char::is_control);
        for (k, v) in &self.params {
            let ok =
                !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic() && !b"&=#?%+".contains(&b));
            if k.is_empty() || !ok {
                return Err(at(
                    "params",
                    k,
                    "must map a network or click parameter to a query parameter name (e.g. impact = \"irpid\")",
                ));
            }
        }
        let tables = [
            ("ids", &self.ids),
            ("clicks", &self.clicks),
            ("utm_sources", &self.utm_sources),
        ];
        for (table, map) in tables {
            for (k, v) in map {
                if !name_ok(v) {
                    return Err(at(
                        table,
                        k,
                        "must name a partner (1 to 128 characters, no control character)",
                    ));
                }
                if table == "utm_sources" {
                    if k.trim().is_empty() {
                        return Err(at(table, k, "must not be empty"));
                    }
                    if map.keys().filter(|o| o.eq_ignore_ascii_case(k)).count() > 1 {
                        return Err(at(table, k, "appears twice (UTM sources match in any case)"));
                    }
                    continue;
                }
                let Some((a, _)) = k.split_once(':').filter(|(a, b)| !a.is_empty() && !b.is_empty()) else {
                    let shape = if table == "ids" {
                        "\"<network>:<partner ID>\", e.g. \"impact:12345\""
                    } else {
                        "\"<click parameter>:<click ID>\", e.g. \"ranSiteID:abc123\""
                    };
                    return Err(at(table, k, &format!("must be {shape}")));
                };
                if table == "ids" && !self.params.keys().any(|n| n == a) {
                    return Err(at(
                        table,
                        k,
                        &format!("names network {a:?}, which has no partner parameter in partners.params"),
                    ));
                }
            }
        }
        for (k, v) in &self.names {
            if !name_ok(v) {
                return Err(at(
                    "names",
                    k,
                    "must be a display name (1 to 128 characters, no control character)",
                ));
            }
            let known = tables.iter().any(|(_, m)| m.values().any(|p| p == k)) || promo_codes.values().any(|p| p == k);
            if !known {
                return Err(at(
                    "names",
                    k,
                    "is a partner no mapping (ids, clicks, utm_sources, promo_codes) credits",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partners() -> Partners {
        let text = r#"
            params = { impact = "irpid", aff_id = "pub" }
            [ids]
            "impact:12345" = "anna"
            [clicks]
            "ranSiteID:abc123" = "anna"
            [utm_sources]
            Anna_Blog = "anna"
            newsletter = "newsletter-partner"
            [names]
            anna = "Anna's Blog"
        "#;
        toml::from_str(text).unwrap()
    }

    fn touch(param: &str, network: &str, value: &str, landing: &str) -> Touch {
        Touch {
            param: param.into(),
            network: network.into(),
            value: value.into(),
            at: 1,
            path: "/".into(),
            landing: landing.into(),
            cross_device: false,
            traffic: crate::traffic::Traffic::Human,
        }
    }

    /// Renders a partner compactly: `id|name|via`, or `none`.
    fn show(p: Option<Partner>) -> String {
        match p {
            Some(p) => format!("{}|{}|{}", p.id, p.name.as_deref().unwrap_or("-"), p.via.as_str()),
            None => "none".into(),
        }
    }

    #[test]
    fn clicks_name_their_partner() {
        let p = partners();
        let cases = [
            // The network's partner parameter, mapped, then unmapped (its own identity, no name).
            (
                touch("irclickid", "impact", "A", "irclickid=A&irpid=12345"),
                "anna|Anna's Blog|param",
            ),
            (
                touch("irclickid", "impact", "B", "IRPID=12345&irclickid=B"),
                "anna|Anna's Blog|param",
            ),
            (
                touch("irclickid", "impact", "C", "irclickid=C&irpid=777"),
                "impact:777|-|param",
            ),
            (
                touch("irclickid", "impact", "C", "irclickid=C&irpid=%20777%20"),
                "impact:777|-|param",
            ),
            // The parameter wins over a mapped UTM source on the same landing.
            (
                touch("irclickid", "impact", "D", "irclickid=D&irpid=9&utm_source=newsletter"),
                "impact:9|-|param",
            ),
            // An empty partner parameter counts as none: the UTM source decides.
            (
                touch("irclickid", "impact", "D", "irclickid=D&irpid=&utm_source=newsletter"),
                "newsletter-partner|newsletter-partner|utm_source",
            ),
            // Configured by click parameter rather than network.
            (
                touch("aff_id", "myprogram", "X", "aff_id=X&pub=p1"),
                "myprogram:p1|-|param",
            ),
            // A listed click ID (the parameter in any case).
            (touch("ransiteid", "rakuten", "abc123", ""), "anna|Anna's Blog|click"),
            (touch("ranSiteID", "rakuten", "abc124", ""), "none"),
            // UTM sources in any case, encoded or not.
            (
                touch("gclid", "google", "G", "utm_source=anna_blog"),
                "anna|Anna's Blog|utm_source",
            ),
            (
                touch("gclid", "google", "G", "utm_source=Anna%5FBlog&utm_medium=cpc"),
                "anna|Anna's Blog|utm_source",
            ),
            (touch("gclid", "google", "G", "utm_source=google"), "none"),
            // Nothing maps; a touch stored before partners existed has no landing.
            (touch("irclickid", "impact", "E", "irclickid=E"), "none"),
            (touch("irclickid", "impact", "E", ""), "none"),
        ];
        for (t, want) in cases {
            assert_eq!(show(p.of_click(&t)), want, "{t:?}");
        }
        assert_eq!(show(Some(p.of_promo("anna"))), "anna|Anna's Blog|promo_code");
        assert_eq!(show(Some(p.of_promo("bob"))), "bob|bob|promo_code");
        assert_eq!(
            show(Partners::default().of_click(&touch("irclickid", "impact", "A", "irpid=1"))),
            "none"
        );
    }

    #[test]
    fn mapping_is_checked() {
        let promo: BTreeMap<String, String> = [("SPRING10".to_string(), "anna".to_string())].into();
        partners().check("shop", &promo).unwrap();
        let bad = [
            (
                "params = { impact = \"ir pid\" }",
                "partners.params key \"impact\" must map",
            ),
            ("params = { impact = \"\" }", "partners.params key \"impact\""),
            (
                "[ids]\n\"12345\" = \"anna\"",
                "partners.ids key \"12345\" must be \"<network>:<partner ID>\"",
            ),
            (
                "[ids]\n\"awin:1\" = \"anna\"",
                "names network \"awin\", which has no partner parameter",
            ),
            (
                "params = { impact = \"irpid\" }\n[ids]\n\"impact:1\" = \"\"",
                "must name a partner",
            ),
            (
                "[clicks]\n\"abc\" = \"anna\"",
                "partners.clicks key \"abc\" must be \"<click parameter>:<click ID>\"",
            ),
            ("[utm_sources]\nNews = \"a\"\nnews = \"b\"", "appears twice"),
            ("[utm_sources]\n\" \" = \"a\"", "must not be empty"),
            (
                "[names]\nbob = \"Bob\"",
                "partners.names key \"bob\" is a partner no mapping",
            ),
        ];
        for (text, want) in bad {
            let p: Partners = toml::from_str(text).unwrap();
            let err = p.check("shop", &promo).unwrap_err();
            assert!(
                err.contains(want) && err.contains("site \"shop\""),
                "{text:?} gave {err:?}"
            );
        }
        // A promo code's partner may have a display name.
        let p: Partners = toml::from_str("[names]\nanna = \"Anna\"").unwrap();
        p.check("shop", &promo).unwrap();
    }
}
