//! The object store: objects per resource, the global resourceVersion counter, the watch event
//! history (for watches that resume from an older resourceVersion) and the broadcast channel
//! that feeds open watches.
//!
//! Every mutation happens under one lock held by the caller; events are broadcast while the lock
//! is held, so a watch that subscribes under the lock sees every event after its snapshot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::{Notify, broadcast};

use crate::object;
use crate::resources::{Registry, ResKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// A change to one object, as stored in the history and sent to watches.
#[derive(Debug)]
pub struct StoreEvent {
    pub rv: u64,
    pub etype: EventType,
    pub key: ResKey,
    pub namespace: String,
    /// The object after the change (for DELETED: its final state).
    pub object: Arc<Value>,
    /// The object before the change, so selector watches can turn a MODIFIED that leaves the
    /// selection into a DELETED, like the API server's watch cache does.
    pub old: Option<Arc<Value>>,
}

type ObjKey = (String, String);

/// Locks the store shared by request handlers and controllers.
pub fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A panic while holding the lock leaves the store as it was between two steps of one
    // request; carrying on is better than failing every later request of a test run.
    store.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Store {
    pub registry: Registry,
    rv: u64,
    published_rv: Arc<AtomicU64>,
    objects: HashMap<ResKey, BTreeMap<ObjKey, Value>>,
    history: VecDeque<Arc<StoreEvent>>,
    /// Events before this resourceVersion are compacted away (etcd's compaction): watches and
    /// list continue tokens from older resourceVersions get 410 Gone.
    history_floor: u64,
    /// Where the watch cache of the current API server "process" begins (raised by a restart):
    /// watches from older resourceVersions get 410 Gone, continue tokens are unaffected.
    watch_floor: u64,
    history_capacity: usize,
    events: broadcast::Sender<Arc<StoreEvent>>,
    /// Wakes the controllers (garbage collector, namespace and CRD cleanup).
    pub controllers: Arc<Notify>,
}

impl Store {
    pub fn new(registry: Registry, history_capacity: usize) -> Self {
        let (events, _) = broadcast::channel(4096);
        Store {
            registry,
            rv: 1,
            published_rv: Arc::new(AtomicU64::new(1)),
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_floor: 1,
            watch_floor: 1,
            history_capacity,
            events,
            controllers: Arc::new(Notify::new()),
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// The newest resourceVersion whose event has already been broadcast; readable without the
    /// lock, for watch bookmarks.
    pub fn published_rv(&self) -> Arc<AtomicU64> {
        self.published_rv.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        self.events.subscribe()
    }

    pub fn get(&self, key: &ResKey, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(key)
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())))
    }

    /// Objects of one resource, sorted by namespace then name; all namespaces when `namespace`
    /// is `None`.
    pub fn list(&self, key: &ResKey, namespace: Option<&str>) -> Vec<&Value> {
        let Some(m) = self.objects.get(key) else {
            return Vec::new();
        };
        match namespace {
            None => m.values().collect(),
            Some(ns) => m
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v)
                .collect(),
        }
    }

    pub fn keys(&self) -> Vec<ResKey> {
        self.objects.keys().cloned().collect()
    }

    pub fn all_objects(&self) -> impl Iterator<Item = (&ResKey, &Value)> {
        self.objects
            .iter()
            .flat_map(|(k, m)| m.values().map(move |v| (k, v)))
    }

    /// Stores a new or changed object with a fresh resourceVersion and emits its event.
    pub fn put(&mut self, key: &ResKey, mut obj: Value, old: Option<Value>) -> Value {
        self.rv += 1;
        let rv = self.rv;
        object::metadata_mut(&mut obj)
            .insert("resourceVersion".into(), Value::String(rv.to_string()));
        let ns = object::namespace(&obj).to_string();
        let name = object::name(&obj).to_string();
        self.objects
            .entry(key.clone())
            .or_default()
            .insert((ns.clone(), name), obj.clone());
        let etype = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(StoreEvent {
            rv,
            etype,
            key: key.clone(),
            namespace: ns,
            object: Arc::new(obj.clone()),
            old: old.map(Arc::new),
        });
        obj
    }

    /// Removes an object for good and emits DELETED carrying `final_obj` (the object as it was
    /// last written, so watchers see finalizers emptied and the deletion timestamp).
    pub fn remove(
        &mut self,
        key: &ResKey,
        namespace: &str,
        name: &str,
        final_obj: Option<Value>,
    ) -> Option<Value> {
        let stored = self
            .objects
            .get_mut(key)
            .and_then(|m| m.remove(&(namespace.to_string(), name.to_string())))?;
        let mut obj = final_obj.unwrap_or(stored);
        self.rv += 1;
        let rv = self.rv;
        object::metadata_mut(&mut obj)
            .insert("resourceVersion".into(), Value::String(rv.to_string()));
        self.emit(StoreEvent {
            rv,
            etype: EventType::Deleted,
            key: key.clone(),
            namespace: namespace.to_string(),
            object: Arc::new(obj.clone()),
            old: None,
        });
        self.controllers.notify_one();
        Some(obj)
    }

    fn emit(&mut self, ev: StoreEvent) {
        let ev = Arc::new(ev);
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_capacity {
            if let Some(old) = self.history.pop_front() {
                self.history_floor = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(ev.clone());
        self.published_rv.store(ev.rv, Ordering::Release);
    }

    /// Events after `rv` for a watch, or `Err(floor)` when the watch cache no longer has (or
    /// never had) them.
    pub fn history_since(&self, rv: u64) -> Result<Vec<Arc<StoreEvent>>, u64> {
        let floor = self.history_floor.max(self.watch_floor);
        if rv < floor {
            return Err(floor);
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub fn history_floor(&self) -> u64 {
        self.history_floor
    }

    /// Forgets the event history, like an etcd compaction: watches resuming from any older
    /// resourceVersion get 410 Gone and must relist. Bumps the counter so that the current
    /// resourceVersion itself is the new floor and a relist can resume watching from it.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.history.clear();
        self.history_floor = self.rv;
        self.published_rv.store(self.rv, Ordering::Release);
    }

    /// Starts the watch cache afresh, as a restarted API server does. Its cache is filled by
    /// one list at the current resourceVersion, and the oldest event it can deliver is the one
    /// after that list (kube-apiserver's watch cache history answers an older resourceVersion
    /// with "too old resource version: R (L)", L being the list's resourceVersion). So a watch
    /// may resume from the current resourceVersion or later, and one from an older
    /// resourceVersion gets 410 Gone. Objects, the counter and the compaction floor (and so
    /// list continue tokens) are unchanged.
    pub fn restart_watch_cache(&mut self) {
        self.watch_floor = self.rv;
    }

    /// Drops a resource's (already empty) object map, when its CRD goes.
    pub fn drop_resource(&mut self, key: &ResKey) {
        self.objects.remove(key);
    }
}
