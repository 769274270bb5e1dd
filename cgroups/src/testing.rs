//! A fake systemd for tests of the systemd driver on machines without systemd: it serves
//! the part of `org.freedesktop.systemd1.Manager` the driver uses on a D-Bus connection
//! (a private bus), keeps the units it was asked to make with their properties, and
//! answers each job with `JobRemoved` as systemd does. It makes no cgroups: the driver
//! makes their directories itself, as libcontainer does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

/// A unit property as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Property {
    /// `b`.
    Bool(bool),
    /// `t`.
    U64(u64),
    /// `s`.
    Str(String),
    /// `as`.
    Strs(Vec<String>),
    /// Anything else, as zvariant prints it.
    Other(String),
}

impl From<&Value<'_>> for Property {
    fn from(value: &Value<'_>) -> Self {
        match value {
            Value::Bool(b) => Self::Bool(*b),
            Value::U64(n) => Self::U64(*n),
            Value::Str(s) => Self::Str(s.to_string()),
            Value::Array(array) => array
                .iter()
                .map(|item| match item {
                    Value::Str(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map_or_else(|| Self::Other(value.to_string()), Self::Strs),
            other => Self::Other(other.to_string()),
        }
    }
}

/// What the fake holds and saw.
#[derive(Debug, Default)]
struct State {
    /// Active units by name, with their properties (from the start, then updated).
    units: BTreeMap<String, BTreeMap<String, Property>>,
    /// Every call, `<Method> <unit>`, in order.
    calls: Vec<String>,
    next_job: u32,
}

#[derive(zbus::DBusError, Debug)]
#[zbus(prefix = "org.freedesktop.systemd1")]
enum SystemdError {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnitExists(String),
    NoSuchUnit(String),
}

struct Manager {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn properties(list: &[(String, OwnedValue)]) -> impl Iterator<Item = (String, Property)> + '_ {
    list.iter()
        .map(|(name, value)| (name.clone(), Property::from(&**value)))
}

impl Manager {
    /// Records a finished job and announces it.
    async fn job_done(&self, emitter: &SignalEmitter<'_>, unit: &str) -> OwnedObjectPath {
        let id = {
            let mut state = lock(&self.state);
            state.next_job += 1;
            state.next_job
        };
        let path = format!("/org/freedesktop/systemd1/job/{id}");
        let job = ObjectPath::try_from(path.as_str())
            .map_or_else(|_| OwnedObjectPath::default(), OwnedObjectPath::from);
        // The client subscribed before it called, so the signal may come before the reply.
        let _ = Self::job_removed(emitter, id, job.as_ref(), unit, "done").await;
        job
    }
}

// zbus's interface macro generates undocumented methods of its own (property signals).
mod interface {
    #![allow(missing_docs)]

    use super::*;

    #[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
    impl Manager {
        /// Makes a unit, refused when it exists.
        async fn start_transient_unit(
            &self,
            #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
            name: String,
            _mode: String,
            properties: Vec<(String, OwnedValue)>,
            _aux: Vec<(String, Vec<(String, OwnedValue)>)>,
        ) -> Result<OwnedObjectPath, SystemdError> {
            {
                let mut state = lock(&self.state);
                state.calls.push(format!("StartTransientUnit {name}"));
                if state.units.contains_key(&name) {
                    return Err(SystemdError::UnitExists(format!(
                        "Unit {name} was already loaded or has a fragment file."
                    )));
                }
                let props = self::properties(&properties).collect();
                state.units.insert(name.clone(), props);
            }
            Ok(self.job_done(&emitter, &name).await)
        }

        /// Stops (forgets) a unit.
        async fn stop_unit(
            &self,
            #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
            name: String,
            _mode: String,
        ) -> Result<OwnedObjectPath, SystemdError> {
            {
                let mut state = lock(&self.state);
                state.calls.push(format!("StopUnit {name}"));
                if state.units.remove(&name).is_none() {
                    return Err(SystemdError::NoSuchUnit(format!("Unit {name} not loaded.")));
                }
            }
            Ok(self.job_done(&emitter, &name).await)
        }

        /// Updates a unit's properties.
        fn set_unit_properties(
            &self,
            name: String,
            _runtime: bool,
            properties: Vec<(String, OwnedValue)>,
        ) -> Result<(), SystemdError> {
            let mut state = lock(&self.state);
            state.calls.push(format!("SetUnitProperties {name}"));
            let Some(unit) = state.units.get_mut(&name) else {
                return Err(SystemdError::NoSuchUnit(format!("Unit {name} not loaded.")));
            };
            unit.extend(self::properties(&properties));
            Ok(())
        }

        /// Accepts a reset of a unit it knows.
        fn reset_failed_unit(&self, name: String) -> Result<(), SystemdError> {
            let mut state = lock(&self.state);
            state.calls.push(format!("ResetFailedUnit {name}"));
            if state.units.contains_key(&name) {
                Ok(())
            } else {
                Err(SystemdError::NoSuchUnit(format!("Unit {name} not loaded.")))
            }
        }

        /// A job finished with `result`.
        #[zbus(signal)]
        pub(super) async fn job_removed(
            emitter: &SignalEmitter<'_>,
            id: u32,
            job: ObjectPath<'_>,
            unit: &str,
            result: &str,
        ) -> zbus::Result<()>;

        /// A version with every property the driver may send.
        #[zbus(property)]
        fn version(&self) -> String {
            "252.22-1~deb12u1".to_owned()
        }
    }
}

/// The fake systemd, serving while its connection lives.
#[derive(Debug, Clone)]
pub struct FakeSystemd {
    state: Arc<Mutex<State>>,
    connection: zbus::Connection,
}

impl FakeSystemd {
    /// Serves as `org.freedesktop.systemd1` on the bus at `address`.
    ///
    /// # Errors
    ///
    /// The bus cannot be reached or the name is taken.
    pub async fn serve(address: &str) -> zbus::Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let connection = zbus::connection::Builder::address(address)?
            .name("org.freedesktop.systemd1")?
            .serve_at(
                "/org/freedesktop/systemd1",
                Manager {
                    state: state.clone(),
                },
            )?
            .build()
            .await?;
        Ok(Self { state, connection })
    }

    /// The active units and their properties.
    pub fn units(&self) -> BTreeMap<String, BTreeMap<String, Property>> {
        lock(&self.state).units.clone()
    }

    /// Every call so far, `<Method> <unit>`, in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).calls.clone()
    }

    /// The connection the fake serves on.
    pub fn connection(&self) -> &zbus::Connection {
        &self.connection
    }
}
