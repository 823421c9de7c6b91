//! Attribution rules: which click (or promo-code partner) a conversion credits. Pure functions
//! over stored touchpoints, so the rules are tested as tables and re-applied at read time (a late
//! identify event changes the answer without rewriting anything).

use crate::store::Touch;
use crate::traffic::Exclude;

/// How the credited click is chosen among the candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The latest candidate click (the default).
    LastClick,
    /// The earliest candidate click.
    FirstClick,
}

impl Model {
    /// Reads the read API's `model` parameter.
    pub fn parse(s: &str) -> Option<Model> {
        match s {
            "last_click" => Some(Model::LastClick),
            "first_click" => Some(Model::FirstClick),
            _ => None,
        }
    }

    /// The name the read API reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::LastClick => "last_click",
            Model::FirstClick => "first_click",
        }
    }
}

/// Who gets the credit for a conversion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credit {
    /// A click, chosen by the model.
    Click(Model, Touch),
    /// No click candidate, but a promo code mapped to this partner (model `promo_code`).
    Promo(String),
}

/// The attribution of one conversion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    /// The credit, if anyone earned it.
    pub credit: Option<Credit>,
    /// Every candidate click, oldest first.
    pub touchpoints: Vec<Touch>,
    /// The promo code and the partner it maps to, when it maps to one (reported even when a
    /// click takes the main credit).
    pub promo: Option<(String, String)>,
}

/// Attributes a conversion at `at` (ms). Candidates are the touches at or before `at` and no
/// older than `window_ms`; the same click seen twice (e.g. on two linked devices) counts once,
/// preferring the converting visitor's own record. `promo` is the code and its partner, if the
/// code maps to one. A touch whose traffic class is in `exclude` (a bot's or an automated
/// browser's click) is no candidate: it earns no credit and is not listed.
pub fn attribute(
    at: u64,
    window_ms: u64,
    model: Model,
    touches: &[Touch],
    promo: Option<(&str, &str)>,
    exclude: Exclude,
) -> Attribution {
    let from = at.saturating_sub(window_ms);
    let mut candidates: Vec<Touch> = Vec::new();
    for t in touches
        .iter()
        .filter(|t| t.at <= at && t.at >= from && !exclude.contains(t.traffic))
    {
        let same = |c: &Touch| c.param == t.param && c.value == t.value && c.at == t.at;
        match candidates.iter_mut().find(|c| same(c)) {
            Some(c) => c.cross_device &= t.cross_device,
            None => candidates.push(t.clone()),
        }
    }
    candidates.sort_by(|a, b| (a.at, &a.param, &a.value).cmp(&(b.at, &b.param, &b.value)));
    // At equal times the converting visitor's own click wins over a linked device's.
    let chosen = match model {
        Model::LastClick => candidates.iter().max_by_key(|t| (t.at, !t.cross_device)),
        Model::FirstClick => candidates.iter().min_by_key(|t| (t.at, t.cross_device)),
    };
    let promo = promo.map(|(c, p)| (c.to_string(), p.to_string()));
    let credit = match (chosen, &promo) {
        (Some(t), _) => Some(Credit::Click(model, t.clone())),
        (None, Some((_, partner))) => Some(Credit::Promo(partner.clone())),
        (None, None) => None,
    };
    Attribution {
        credit,
        touchpoints: candidates,
        promo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;
    const WINDOW: u64 = 30 * DAY;
    const CONV: u64 = 100 * DAY;

    fn touch(network: &str, value: &str, at: u64, cross_device: bool) -> Touch {
        Touch {
            param: format!("{network}_id"),
            network: network.into(),
            value: value.into(),
            at,
            path: "/".into(),
            landing: String::new(),
            cross_device,
            traffic: crate::traffic::Traffic::Human,
        }
    }

    /// Renders the outcome compactly: credit, then the touchpoint values.
    fn check(model: Model, touches: &[Touch], promo: Option<(&str, &str)>, want: &str) {
        let a = attribute(CONV, WINDOW, model, touches, promo, Exclude::FLAGGED);
        let credit = match &a.credit {
            Some(Credit::Click(m, t)) => {
                format!("{}:{}{}", m.as_str(), t.value, if t.cross_device { "(x)" } else { "" })
            }
            Some(Credit::Promo(p)) => format!("promo_code:{p}"),
            None => "none".into(),
        };
        let tps: Vec<&str> = a.touchpoints.iter().map(|t| t.value.as_str()).collect();
        let got = format!("{credit} [{}]", tps.join(","));
        assert_eq!(got, want);
    }

    /// A row of the rules table: model, touches, promo (code, partner), expected rendering.
    type Case = (Model, Vec<Touch>, Option<(&'static str, &'static str)>, &'static str);

    #[test]
    fn rules() {
        let anna = Some(("SPRING10", "influencer-anna"));
        let cases: Vec<Case> = vec![
            (Model::LastClick, vec![], None, "none []"),
            (
                Model::LastClick,
                vec![touch("impact", "A", CONV - DAY, false)],
                None,
                "last_click:A [A]",
            ),
            // Several partners: the last wins, all are kept.
            (
                Model::LastClick,
                vec![
                    touch("google", "G", CONV - 5 * DAY, false),
                    touch("impact", "I", CONV - DAY, false),
                ],
                None,
                "last_click:I [G,I]",
            ),
            (
                Model::FirstClick,
                vec![
                    touch("impact", "I", CONV - DAY, false),
                    touch("google", "G", CONV - 5 * DAY, false),
                ],
                None,
                "first_click:G [G,I]",
            ),
            // Outside the window, or after the conversion: not a candidate.
            (
                Model::LastClick,
                vec![touch("impact", "OLD", CONV - WINDOW - 1, false)],
                None,
                "none []",
            ),
            (
                Model::LastClick,
                vec![touch("impact", "EDGE", CONV - WINDOW, false)],
                None,
                "last_click:EDGE [EDGE]",
            ),
            (
                Model::LastClick,
                vec![touch("impact", "LATER", CONV + 1, false)],
                None,
                "none []",
            ),
            (
                Model::LastClick,
                vec![touch("impact", "SAME", CONV, false)],
                None,
                "last_click:SAME [SAME]",
            ),
            // Promo code: credit only without a click candidate, reported either way.
            (Model::LastClick, vec![], anna, "promo_code:influencer-anna []"),
            (
                Model::LastClick,
                vec![touch("impact", "I", CONV - DAY, false)],
                anna,
                "last_click:I [I]",
            ),
            (
                Model::LastClick,
                vec![touch("impact", "OLD", 1, false)],
                anna,
                "promo_code:influencer-anna []",
            ),
            // Cross-device: a linked device's click is a candidate like any other.
            (
                Model::LastClick,
                vec![touch("impact", "L", CONV - DAY, true)],
                None,
                "last_click:L(x) [L]",
            ),
            (
                Model::LastClick,
                vec![
                    touch("google", "G", CONV - 2 * DAY, false),
                    touch("impact", "L", CONV - DAY, true),
                ],
                None,
                "last_click:L(x) [G,L]",
            ),
            // The same click recorded on both devices counts once, as the converting device's.
            (
                Model::LastClick,
                vec![
                    touch("impact", "S", CONV - DAY, true),
                    touch("impact", "S", CONV - DAY, false),
                ],
                None,
                "last_click:S [S]",
            ),
            // Two different clicks at the same instant: the converting device's wins.
            (
                Model::LastClick,
                vec![touch("zz", "X", CONV - DAY, false), touch("aa", "Y", CONV - DAY, true)],
                None,
                "last_click:X [Y,X]",
            ),
        ];
        for (model, touches, promo, want) in cases {
            check(model, &touches, promo, want);
        }
    }

    /// A bot's or an automated browser's click earns no credit while its class is excluded: the
    /// human click before it keeps the credit, or the promo code's partner takes it; with
    /// nothing excluded (`&traffic=all`) it is a click like any other.
    #[test]
    fn flagged_touches_earn_no_credit() {
        use crate::traffic::Traffic;
        let flagged = |value: &str, at: u64, traffic: Traffic| Touch {
            traffic,
            ..touch("impact", value, at, false)
        };
        let human = touch("impact", "H", CONV - 2 * DAY, false);
        let bot = flagged("B", CONV - DAY, Traffic::Bot);
        let auto = flagged("A", CONV - DAY / 2, Traffic::Automation);
        let all = [human.clone(), bot.clone(), auto.clone()];
        check(Model::LastClick, &all, None, "last_click:H [H]");
        check(Model::FirstClick, &[bot.clone(), human], None, "first_click:H [H]");
        check(
            Model::LastClick,
            &[bot.clone(), auto.clone()],
            Some(("SPRING", "anna")),
            "promo_code:anna []",
        );
        check(Model::LastClick, &[bot.clone(), auto.clone()], None, "none []");
        let a = attribute(CONV, WINDOW, Model::LastClick, &all, None, Exclude::NONE);
        assert!(matches!(&a.credit, Some(Credit::Click(_, t)) if t.value == "A" && t.traffic == Traffic::Automation));
        assert_eq!(a.touchpoints.len(), 3);
        // A site that counts automation (`exclude = ["bot"]`).
        let a = attribute(CONV, WINDOW, Model::LastClick, &all, None, Exclude::of(&[Traffic::Bot]));
        assert!(matches!(&a.credit, Some(Credit::Click(_, t)) if t.value == "A"));
        assert_eq!(a.touchpoints.len(), 2);
    }

    #[test]
    fn models_parse() {
        assert_eq!(Model::parse("last_click"), Some(Model::LastClick));
        assert_eq!(Model::parse("first_click"), Some(Model::FirstClick));
        assert_eq!(Model::parse("linear"), None);
    }
}
