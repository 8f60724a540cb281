//! Model prices as data (templates/prices.toml, built in, and the user's
//! `~/.config/git-agent/prices.toml`, whose entries win), for the cost of a run whose agent
//! reports tokens and its model but no cost. An unknown model gets no cost: tokens only,
//! never a guess.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::claude::RunStats;

const BUILT_IN: &str = include_str!("../../templates/prices.toml");

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// A price table: model name (or prefix) to price.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    #[serde(default)]
    pub models: BTreeMap<String, Price>,
}

impl Prices {
    /// The built-in table with the user's file on top. A user file that does not read as a
    /// table is left out (the built-in prices still apply; `doctor` is where to say so).
    pub fn load() -> Prices {
        let mut prices = Prices::parse(BUILT_IN).expect("the built-in price table parses");
        if let Some(path) = crate::data::user_config_dir().map(|d| d.join("prices.toml"))
            && let Ok(text) = std::fs::read_to_string(path)
            && let Some(user) = Prices::parse(&text)
        {
            prices.models.extend(user.models);
        }
        prices
    }

    /// A table from TOML text; `None` when it is not one (or holds a negative or non-finite
    /// price).
    pub fn parse(text: &str) -> Option<Prices> {
        let p: Prices = toml::from_str(text).ok()?;
        p.models
            .values()
            .all(|x| {
                x.input.is_finite() && x.output.is_finite() && x.input >= 0.0 && x.output >= 0.0
            })
            .then_some(p)
    }

    /// The price of `model`: its own entry, else the longest entry it extends with '-'.
    pub fn find(&self, model: &str) -> Option<Price> {
        self.models
            .iter()
            .filter(|(name, _)| {
                model == name.as_str()
                    || model
                        .strip_prefix(name.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    /// `stats` with a cost when the agent reported none and its model and tokens are known
    /// and priced.
    pub fn priced(&self, mut stats: RunStats) -> RunStats {
        if stats.cost_usd.is_none()
            && let (Some(model), Some(i), Some(o)) =
                (&stats.model, stats.input_tokens, stats.output_tokens)
            && let Some(p) = self.find(model)
        {
            stats.cost_usd = Some((i as f64 * p.input + o as f64 * p.output) / 1_000_000.0);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_match_by_name_or_dashed_prefix_longest_first() {
        let p = Prices::parse(BUILT_IN).unwrap();
        assert_eq!(p.find("gpt-5").unwrap().input, 1.25);
        assert_eq!(p.find("gpt-5-2025-08-07").unwrap().input, 1.25);
        assert_eq!(p.find("gpt-5-mini-2025-08-07").unwrap().input, 0.25);
        assert_eq!(p.find("claude-sonnet-4-20250514").unwrap().output, 15.0);
        assert!(p.find("gpt-5.1").is_none());
        assert!(p.find("gpt-").is_none());
        assert!(p.find("my-local-model").is_none());
        assert!(p.find("").is_none());
    }

    #[test]
    fn cost_only_for_a_known_model_and_never_over_a_reported_one() {
        let p = Prices::parse("[models.m]\ninput = 2.0\noutput = 10.0\n").unwrap();
        let run = RunStats {
            model: Some("m-1".into()),
            input_tokens: Some(1_000_000),
            output_tokens: Some(100_000),
            ..RunStats::default()
        };
        assert_eq!(p.priced(run.clone()).cost_usd, Some(3.0));
        let reported = RunStats {
            cost_usd: Some(0.5),
            ..run.clone()
        };
        assert_eq!(p.priced(reported).cost_usd, Some(0.5));
        let unknown = RunStats {
            model: Some("other".into()),
            ..run.clone()
        };
        assert_eq!(p.priced(unknown).cost_usd, None);
        let no_model = RunStats { model: None, ..run };
        assert_eq!(p.priced(no_model).cost_usd, None);
        for bad in [
            "[models.m]\ninput = -1.0\noutput = 1.0\n",
            "[models.m]\ninput = nan\noutput = 1.0\n",
            "[models.m]\ninput = 1.0\n",
            "models = 3\n",
        ] {
            assert!(Prices::parse(bad).is_none(), "{bad}");
        }
    }
}
