//! Feature gates as the upstream kubelet v1.37.2 knows them (`featureGates` in the
//! configuration, `--feature-gates` on the command line): every gate's name, default,
//! lock and stage, and upstream's rules for setting them (`SetFromMap` in
//! k8s.io/component-base/featuregate).
//!
//! ```
//! use std::collections::BTreeMap;
//! use kubelet_core::config::feature_gates::{self, FeatureGates};
//!
//! let set = BTreeMap::from([("EventedPLEG".to_owned(), true)]);
//! let gates = FeatureGates::new(&set).expect("known gates");
//! assert!(gates.enabled("EventedPLEG"));
//! assert!(gates.enabled("GracefulNodeShutdown")); // its 1.37 default
//!
//! let unknown = BTreeMap::from([("NoSuchGate".to_owned(), true)]);
//! assert_eq!(
//!     FeatureGates::new(&unknown).unwrap_err(),
//!     ["unrecognized feature gate: NoSuchGate"]
//! );
//! assert!(feature_gates::spec("GracefulNodeShutdown").is_some());
//! ```

mod known;

use std::collections::BTreeMap;

pub use known::KNOWN_FEATURES;

/// The two gates that set every alpha, or every beta, gate not named otherwise.
const ALL_ALPHA: &str = "AllAlpha";
const ALL_BETA: &str = "AllBeta";

/// A gate's maturity at Kubernetes 1.37.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Off by default, may change or go.
    Alpha,
    /// Usually on by default.
    Beta,
    /// General availability: setting it is warned about, it will be removed.
    Ga,
    /// On its way out: setting it is warned about.
    Deprecated,
}

/// One known feature gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureSpec {
    /// The gate's name, e.g. `GracefulNodeShutdown`.
    pub name: &'static str,
    /// Its value when not set.
    pub default: bool,
    /// Whether it can only be set to its default.
    pub locked: bool,
    /// Its maturity.
    pub stage: Stage,
    /// Gates that must be enabled when this one is.
    pub depends_on: &'static [&'static str],
}

/// The gate named `name`, if upstream knows it.
pub fn spec(name: &str) -> Option<&'static FeatureSpec> {
    KNOWN_FEATURES
        .binary_search_by(|f| f.name.cmp(name))
        .ok()
        .map(|i| &KNOWN_FEATURES[i])
}

/// Whether the gate `name` is on under the `featureGates` map `gates`: its value there,
/// else `AllAlpha`/`AllBeta` for an alpha/beta gate, else its 1.37 default (false for a
/// name upstream does not know). Meaningful for maps [`FeatureGates::new`] accepts.
pub fn enabled_in(gates: &BTreeMap<String, bool>, name: &str) -> bool {
    if let Some(&value) = gates.get(name) {
        return value;
    }
    let Some(spec) = spec(name) else {
        return false;
    };
    let all = match spec.stage {
        Stage::Alpha => gates.get(ALL_ALPHA),
        Stage::Beta => gates.get(ALL_BETA),
        Stage::Ga | Stage::Deprecated => None,
    };
    all.copied().unwrap_or(spec.default)
}

/// The value of every gate after a `featureGates` map is applied, as upstream's
/// `SetFromMap` leaves its gate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureGates {
    /// The gates set, explicitly or through `AllAlpha`/`AllBeta`.
    set: BTreeMap<&'static str, bool>,
}

impl FeatureGates {
    /// Applies `gates` as upstream does, or upstream's errors: an unknown name stops at
    /// once (`unrecognized feature gate: X`), a locked gate set to anything but its
    /// default is refused, and an enabled gate whose dependencies are disabled is refused.
    pub fn new(gates: &BTreeMap<String, bool>) -> Result<Self, Vec<String>> {
        let mut set = BTreeMap::new();
        let mut errors = Vec::new();
        // Explicit values first, so that AllAlpha/AllBeta only fill the gates left unset
        // whatever the order (upstream iterates a Go map, and the result is the same).
        let mut all = Vec::new();
        for (name, &value) in gates {
            let Some(spec) = spec(name) else {
                return Err(vec![format!("unrecognized feature gate: {name}")]);
            };
            if spec.locked && spec.default != value {
                errors.push(format!(
                    "cannot set feature gate {name} to {value}, feature is locked to {}",
                    spec.default
                ));
                continue;
            }
            match spec.name {
                ALL_ALPHA => all.push((Stage::Alpha, value)),
                ALL_BETA => all.push((Stage::Beta, value)),
                _ => {}
            }
            set.insert(spec.name, value);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for (stage, value) in all {
            for spec in KNOWN_FEATURES {
                if spec.stage == stage && !matches!(spec.name, ALL_ALPHA | ALL_BETA) {
                    set.entry(spec.name).or_insert(value);
                }
            }
        }
        let gates = Self { set };
        for spec in KNOWN_FEATURES {
            if !gates.enabled(spec.name) {
                continue;
            }
            let disabled: Vec<&str> = spec
                .depends_on
                .iter()
                .copied()
                .filter(|dep| !gates.enabled(dep))
                .collect();
            if !disabled.is_empty() {
                // Go prints the slice as `[A B]`.
                errors.push(format!(
                    "{} is enabled, but depends on features that are disabled: [{}]",
                    spec.name,
                    disabled.join(" ")
                ));
            }
        }
        if errors.is_empty() {
            Ok(gates)
        } else {
            Err(errors)
        }
    }

    /// Whether the gate is on: its value when set, else its 1.37 default (false for a
    /// name upstream does not know).
    pub fn enabled(&self, name: &str) -> bool {
        match self.set.get(name) {
            Some(&value) => value,
            None => spec(name).is_some_and(|s| s.default),
        }
    }

    /// Upstream's warnings for the gates set explicitly in `gates`: deprecated and GA
    /// gates will be removed.
    pub fn warnings(gates: &BTreeMap<String, bool>) -> Vec<String> {
        gates
            .iter()
            .filter_map(|(name, value)| {
                let kind = match spec(name)?.stage {
                    Stage::Deprecated => "deprecated",
                    Stage::Ga => "GA",
                    Stage::Alpha | Stage::Beta => return None,
                };
                Some(format!(
                    "setting {kind} feature gate {name}={value}. It will be removed in a \
                     future release."
                ))
            })
            .collect()
    }

    /// The gates whose value differs from their default, by name.
    pub fn changed(&self) -> impl Iterator<Item = (&'static str, bool)> + '_ {
        self.set
            .iter()
            .filter(|(name, value)| spec(name).is_some_and(|s| s.default != **value))
            .map(|(name, value)| (*name, *value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn the_table_is_sorted_and_complete() {
        assert!(KNOWN_FEATURES.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(KNOWN_FEATURES.len(), 254);
        for spec in KNOWN_FEATURES {
            for dep in spec.depends_on {
                assert!(super::spec(dep).is_some(), "{} -> {dep}", spec.name);
            }
        }
    }

    #[test]
    fn defaults_and_values() {
        let none = FeatureGates::new(&BTreeMap::new()).expect("empty");
        assert!(none.enabled("GracefulNodeShutdown"));
        assert!(!none.enabled("EventedPLEG"));
        assert!(!none.enabled("NoSuchGate"));
        assert_eq!(none.changed().count(), 0);
        let set = FeatureGates::new(&gates(&[("EventedPLEG", true)])).expect("ok");
        assert!(set.enabled("EventedPLEG"));
        assert_eq!(set.changed().collect::<Vec<_>>(), [("EventedPLEG", true)]);
        // Setting a gate to its default is no change.
        let same = FeatureGates::new(&gates(&[("GracefulNodeShutdown", true)])).expect("ok");
        assert_eq!(same.changed().count(), 0);
    }

    #[test]
    fn upstreams_errors() {
        assert_eq!(
            FeatureGates::new(&gates(&[("NoSuchGate", true), ("EventedPLEG", true)])),
            Err(vec!["unrecognized feature gate: NoSuchGate".to_owned()])
        );
        let locked = KNOWN_FEATURES
            .iter()
            .find(|s| s.locked && s.depends_on.is_empty())
            .expect("a locked gate");
        assert_eq!(
            FeatureGates::new(&gates(&[(locked.name, !locked.default)])),
            Err(vec![format!(
                "cannot set feature gate {} to {}, feature is locked to {}",
                locked.name, !locked.default, locked.default
            )])
        );
        assert!(FeatureGates::new(&gates(&[(locked.name, locked.default)])).is_ok());
        // Two gates on by default need GracefulNodeShutdown (upstream answers the same).
        assert_eq!(
            FeatureGates::new(&gates(&[("GracefulNodeShutdown", false)])),
            Err(vec![
                "GracefulNodeShutdownBasedOnPodPriority is enabled, but depends on features \
                 that are disabled: [GracefulNodeShutdown]"
                    .to_owned(),
                "WindowsGracefulNodeShutdown is enabled, but depends on features that are \
                 disabled: [GracefulNodeShutdown]"
                    .to_owned()
            ])
        );
    }

    #[test]
    fn all_alpha_and_all_beta_fill_unset_gates() {
        let g = FeatureGates::new(&gates(&[
            ("AllAlpha", true),
            ("AllBeta", false),
            ("GracefulNodeShutdown", true),
            ("GracefulNodeShutdownBasedOnPodPriority", true),
            ("EventedPLEG", false),
        ]));
        // Every beta gate but the two named is now off, so some enabled gate's beta
        // dependency is off: upstream refuses that combination too.
        let errors = g.expect_err("dependencies");
        assert!(
            errors.iter().all(|e| e.contains("depends on")),
            "{errors:?}"
        );

        let g = FeatureGates::new(&gates(&[("AllAlpha", false), ("AllBeta", true)]))
            .expect("beta on, alpha off");
        assert!(g.enabled("GracefulNodeShutdown"));
        assert!(!g.enabled("EventedPLEG"));
        let beta_default_off = KNOWN_FEATURES
            .iter()
            .find(|s| s.stage == Stage::Beta && !s.default && !s.locked)
            .expect("a beta gate off by default");
        assert!(g.enabled(beta_default_off.name));
    }

    #[test]
    fn removal_warnings() {
        let ga = KNOWN_FEATURES
            .iter()
            .find(|s| s.stage == Stage::Ga)
            .expect("a GA gate");
        let warnings =
            FeatureGates::warnings(&gates(&[(ga.name, ga.default), ("EventedPLEG", true)]));
        assert_eq!(
            warnings,
            [format!(
                "setting GA feature gate {}={}. It will be removed in a future release.",
                ga.name, ga.default
            )]
        );
    }
}
