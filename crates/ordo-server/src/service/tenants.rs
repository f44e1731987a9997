//! Tenant management. Every change is a commit, like a ruleset change.

use std::sync::Arc;

use super::{Service, spawn_write};
use crate::error::{Error, Result};
use crate::store::{Change, Source};
use crate::tenant::TenantConfig;

impl Service {
    pub fn list_tenants(&self) -> Vec<TenantConfig> {
        let catalog = self.catalog();
        let mut list: Vec<_> = catalog.tenants.values().map(|t| t.config.clone()).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    pub fn get_tenant(&self, id: &str) -> Result<TenantConfig> {
        self.catalog()
            .tenant(id)
            .map(|t| t.config.clone())
            .ok_or_else(|| Error::NotFound(format!("tenant '{id}' not found")))
    }

    /// Creates a tenant (`create_only`: 409 if it exists) or replaces its configuration.
    /// Returns whether it was created.
    pub async fn put_tenant(
        self: &Arc<Self>,
        config: TenantConfig,
        create_only: bool,
    ) -> Result<bool> {
        config.validate().map_err(Error::BadRequest)?;
        let this = self.clone();
        spawn_write(&self.runtime, async move {
            let mut head = this.head.lock().await;
            let catalog = this.projection.load_full();
            let existing = catalog.tenant(&config.id);
            // The default tenant exists from the start, but only as configured by flags
            // until it is written once.
            let exists = existing.is_some();
            if create_only && existing.is_some() {
                return Err(Error::Conflict(format!(
                    "tenant '{}' already exists",
                    config.id
                )));
            }
            if existing.is_some_and(|t| t.stored && t.config == config) {
                return Ok(false);
            }
            let change = Change::PutTenant(config.clone());
            this.commit(&mut head, Source::Api, change, None, move |c, seq| {
                c.put_tenant(seq, config)
            })
            .await?;
            this.write_tenants_file().await;
            Ok(!exists)
        })
        .await
    }

    pub async fn delete_tenant(self: &Arc<Self>, id: String) -> Result<u64> {
        if id == self.config().default_tenant {
            return Err(Error::Conflict(format!(
                "tenant '{id}' is the default tenant and cannot be deleted"
            )));
        }
        let this = self.clone();
        spawn_write(&self.runtime, async move {
            let mut head = this.head.lock().await;
            let catalog = this.projection.load_full();
            let view = catalog
                .tenant(&id)
                .ok_or_else(|| Error::NotFound(format!("tenant '{id}' not found")))?;
            if !view.rulesets.is_empty() {
                return Err(Error::Conflict(format!(
                    "tenant '{id}' still has {} ruleset(s); delete them first",
                    view.rulesets.len()
                )));
            }
            let change = Change::DeleteTenant { id: id.clone() };
            let target = id.clone();
            let seq = this
                .commit(&mut head, Source::Api, change, None, move |c, seq| {
                    c.delete_tenant(seq, &target)
                })
                .await?;
            this.write_tenants_file().await;
            Ok(seq)
        })
        .await
    }

    /// Writes the stored tenants next to the rules files, for readers of the directory.
    /// The log is the truth: a failure here is repaired at the next start.
    pub(super) async fn write_tenants_file(&self) {
        let Some(dir) = self.files.clone().filter(|_| !self.is_reader()) else {
            return;
        };
        let mut tenants: Vec<TenantConfig> = self
            .catalog()
            .tenants
            .values()
            .filter(|t| t.stored)
            .map(|t| t.config.clone())
            .collect();
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        let written = super::run_blocking(move || {
            let text =
                serde_json::to_vec_pretty(&tenants).map_err(|e| Error::Internal(e.to_string()))?;
            let path = dir.tenants_path();
            if std::fs::read(&path).is_ok_and(|old| old == text) {
                return Ok(());
            }
            crate::rules_dir::write_atomic(&path, &text).map_err(|e| Error::Internal(e.to_string()))
        })
        .await;
        if let Err(e) = written {
            self.files_lagging
                .store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::error!(error = %e, "the tenants file could not be written");
        }
    }

    /// A reader of a shared directory takes the tenants the writer wrote there.
    pub(super) fn read_tenants_file(&self, dir: &crate::rules_dir::RulesDir) -> Result<(), String> {
        let path = dir.tenants_path();
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let tenants: Vec<TenantConfig> =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for t in &tenants {
            t.validate()
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let current = self.projection.load_full();
        let next = self.with_tenants(&current, current.seq, &tenants);
        self.projection.store(next);
        Ok(())
    }
}
