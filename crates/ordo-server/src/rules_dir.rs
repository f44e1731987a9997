//! The rules directory: every current ruleset as a readable file, and a place where
//! hand-edited files come in.
//!
//! Layout: `DIR/<name>.json|yaml|yml` for the default tenant, `DIR/tenants/<tenant>/...`
//! for the others, `DIR/.ordo/` for the database. A file's stem is its ruleset's name.
//!
//! Writes follow the log (invariant: files are derived from commits) without ever
//! showing a half-written file, and survive a crash at any point:
//! 1. the new content goes to `.<file>.ordo-tmp` (fsync file and directory), or for a
//!    delete the file is renamed to `.<file>.ordo-del` (fsync directory);
//! 2. the commit is appended to the log;
//! 3. the temp file is renamed over the target / the marker is removed (fsync directory).
//!
//! After a crash, [`RulesDir::recover`] finishes step 3 when the log holds the commit and
//! undoes step 1 when it does not. Any other difference between a file and the log is
//! therefore a hand edit, imported as a commit.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ordo_core::RuleSet;

/// Biggest ruleset file read; larger files are reported and skipped.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
const TMP_SUFFIX: &str = ".ordo-tmp";
const DEL_SUFFIX: &str = ".ordo-del";
const TENANTS_DIR: &str = "tenants";
/// Directory (inside the rules dir) holding the database and lock.
pub const STATE_DIR: &str = ".ordo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

impl Format {
    fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// A file's size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
}

/// `known(tenant, name, stamp, raw_hash)`: whether the caller already knows this file
/// (by its stamp when `raw_hash` is `None`, else by its bytes).
pub type Known<'a> = dyn Fn(&str, &str, Stamp, Option<&str>) -> bool + Sync + 'a;

/// A ruleset file found by a scan.
#[derive(Debug)]
pub struct FileRuleSet {
    pub tenant: String,
    pub name: String,
    pub path: PathBuf,
    pub stamp: Stamp,
    /// SHA-256 of the file's bytes; `None` when the stamp alone showed them known.
    pub raw_hash: Option<String>,
    /// The parsed ruleset; `None` when the caller already knew these bytes. Boxed: a
    /// start lists thousands of files it knows, and a ruleset is large.
    pub ruleset: Option<Box<RuleSet>>,
}

/// A file that could not be used, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileProblem {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything found in the directory.
#[derive(Debug, Default)]
pub struct Scan {
    pub found: Vec<FileRuleSet>,
    pub problems: Vec<FileProblem>,
    /// `(tenant, name)` of rulesets whose files exist but could not be used: they are
    /// neither imported nor treated as deleted.
    pub unusable: HashSet<(String, String)>,
}

/// A staged file change (written and synced next to its target), made visible by
/// `finish`.
#[must_use = "a staged file change must be finished"]
struct PendingFile {
    staged: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    delete: bool,
}

impl PendingFile {
    /// The file this change makes or removes.
    fn target(&self) -> &Path {
        &self.target
    }

    /// The target's size and time once finished (a rename keeps the staged file's);
    /// `None` for a delete.
    fn finished_stamp(&self) -> Option<Stamp> {
        if self.delete {
            None
        } else {
            stamp_of(&self.staged)
        }
    }

    /// Makes the change visible.
    fn finish(self) -> io::Result<()> {
        if self.delete {
            fs::remove_file(&self.staged)?;
        } else {
            fs::rename(&self.staged, &self.target)?;
        }
        sync_dir(&self.dir)
    }
}

pub struct RulesDir {
    root: PathBuf,
    default_tenant: String,
}

/// The embedded commit log of a rules directory: `DIR/.ordo/ordo.db`.
pub fn database_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("ordo.db")
}

impl RulesDir {
    /// Opens (creating) the directory and its state directory.
    pub fn open(root: &Path, default_tenant: &str) -> io::Result<RulesDir> {
        fs::create_dir_all(root.join(STATE_DIR))?;
        Ok(RulesDir {
            root: root.to_path_buf(),
            default_tenant: default_tenant.to_string(),
        })
    }

    /// Opens a directory another instance owns, to read it only: nothing is created.
    pub fn open_read_only(root: &Path, default_tenant: &str) -> RulesDir {
        RulesDir {
            root: root.to_path_buf(),
            default_tenant: default_tenant.to_string(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a changed path can hold a ruleset (not the state directory, not a staged
    /// or hidden file): what a watcher reacts to.
    pub fn is_ruleset_path(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        let hidden = rel
            .components()
            .any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with('.')));
        !hidden
            && (Format::of(path).is_some()
                || rel.starts_with(TENANTS_DIR) && path.extension().is_none())
    }

    pub fn database_path(&self) -> PathBuf {
        database_path(&self.root)
    }

    /// The stored tenants, as the writer last committed them (`.ordo/tenants.json`): how
    /// a reader of the directory learns of tenants other than its default one.
    pub fn tenants_path(&self) -> PathBuf {
        self.root.join(STATE_DIR).join("tenants.json")
    }

    /// Takes the directory's exclusive lock, so that two instances never both act as
    /// the authority over one directory. Held for as long as the returned file lives.
    pub fn lock(&self) -> io::Result<File> {
        let path = self.root.join(STATE_DIR).join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        self.locked(file)
    }

    fn locked(&self, file: File) -> io::Result<File> {
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is locked by another ordo-server ({e})",
                        self.root.display()
                    ),
                )
            },
        )?;
        Ok(file)
    }

    /// The directory's lock as held through `fd`, an open file inherited from the
    /// process that took it: `None` when `fd` is not this directory's lock file. A
    /// process that inherits the lock shares it (one open file, one lock); it takes it
    /// again here so that a file not locked by anyone is locked now, or refused.
    pub fn inherited_lock(&self, fd: std::os::fd::BorrowedFd<'_>) -> Option<io::Result<File>> {
        let path = self.root.join(STATE_DIR).join("lock");
        let (held, ours) = (rustix::fs::fstat(fd).ok()?, rustix::fs::stat(&path).ok()?);
        if (held.st_dev, held.st_ino) != (ours.st_dev, ours.st_ino) {
            return None;
        }
        let file = match fd.try_clone_to_owned() {
            Ok(owned) => File::from(owned),
            Err(e) => return Some(Err(e)),
        };
        Some(self.locked(file))
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        if tenant == self.default_tenant {
            self.root.clone()
        } else {
            self.root.join(TENANTS_DIR).join(tenant)
        }
    }

    /// The file a ruleset lives in: an existing YAML file keeps its format, otherwise JSON.
    fn file_for(&self, tenant: &str, name: &str) -> (PathBuf, Format) {
        let dir = self.tenant_dir(tenant);
        for ext in ["yaml", "yml"] {
            let path = dir.join(format!("{name}.{ext}"));
            if path.exists() {
                return (path, Format::Yaml);
            }
        }
        (dir.join(format!("{name}.json")), Format::Json)
    }

    /// Step 1 of a put: stages the new content next to its target.
    fn prepare_put(&self, tenant: &str, name: &str, ruleset: &RuleSet) -> io::Result<PendingFile> {
        let (target, format) = self.file_for(tenant, name);
        let dir = self.tenant_dir(tenant);
        if !dir.exists() {
            fs::create_dir_all(&dir)?;
            // Make the new directories themselves durable.
            sync_dir(&self.root.join(TENANTS_DIR))?;
            sync_dir(&self.root)?;
        }
        let text = match format {
            Format::Json => {
                let mut t = ruleset.to_json_pretty();
                t.push('\n');
                t
            }
            Format::Yaml => ruleset
                .to_yaml()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
        };
        let staged = staged_path(&target, TMP_SUFFIX);
        let mut file = File::create(&staged)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        sync_dir(&dir)?;
        Ok(PendingFile {
            staged,
            target,
            dir,
            delete: false,
        })
    }

    /// Step 1 of a delete: moves the file aside. `None` when there is no file.
    fn prepare_delete(&self, tenant: &str, name: &str) -> io::Result<Option<PendingFile>> {
        let dir = self.tenant_dir(tenant);
        for ext in ["json", "yaml", "yml"] {
            let target = dir.join(format!("{name}.{ext}"));
            if target.exists() {
                let staged = staged_path(&target, DEL_SUFFIX);
                fs::rename(&target, &staged)?;
                sync_dir(&dir)?;
                return Ok(Some(PendingFile {
                    staged,
                    target,
                    dir,
                    delete: true,
                }));
            }
        }
        Ok(None)
    }

    /// Resolves file changes a crash interrupted: `current` gives the log's content hash
    /// of a ruleset (None when it does not exist). Returns what was done, for the log.
    pub fn recover(&self, current: impl Fn(&str, &str) -> Option<String>) -> Vec<String> {
        let mut done = Vec::new();
        for (tenant, dir) in self.tenant_dirs() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let staged = entry.path();
                let Some(file_name) = staged.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Some(rest) = file_name.strip_prefix('.') else {
                    continue;
                };
                let (target_name, delete) = if let Some(t) = rest.strip_suffix(TMP_SUFFIX) {
                    (t, false)
                } else if let Some(t) = rest.strip_suffix(DEL_SUFFIX) {
                    (t, true)
                } else {
                    continue;
                };
                let target = dir.join(target_name);
                let Some(name) = target.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                let committed = current(&tenant, name);
                let outcome = if delete {
                    if committed.is_none() || target.exists() {
                        fs::remove_file(&staged).map(|()| "removed (delete was committed)")
                    } else {
                        fs::rename(&staged, &target).map(|()| "restored (delete was not committed)")
                    }
                } else {
                    let staged_hash = read_text(&staged)
                        .and_then(|text| parse_ruleset(&text, &target, &tenant))
                        .ok()
                        .map(|r| crate::store::content_hash(&canonical_json(&r)));
                    if staged_hash.is_some() && staged_hash == committed {
                        fs::rename(&staged, &target).map(|()| "completed (write was committed)")
                    } else {
                        fs::remove_file(&staged).map(|()| "discarded (write was not committed)")
                    }
                };
                match outcome.and_then(|what| sync_dir(&dir).map(|()| what)) {
                    Ok(what) => done.push(format!("{}: {what}", target.display())),
                    Err(e) => done.push(format!("{}: recovery failed: {e}", staged.display())),
                }
            }
        }
        done
    }

    /// Directories that hold rulesets, with their tenant.
    fn tenant_dirs(&self) -> Vec<(String, PathBuf)> {
        let mut dirs = vec![(self.default_tenant.clone(), self.root.clone())];
        if let Ok(entries) = fs::read_dir(self.root.join(TENANTS_DIR)) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(tenant) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if tenant.starts_with('.') || !path.is_dir() || tenant == self.default_tenant {
                    continue;
                }
                dirs.push((tenant.to_string(), path));
            }
        }
        dirs
    }

    /// Reads every ruleset file. Problems are collected, never fatal. A file that
    /// `known(tenant, name, stamp, None)` recognises by its stamp is not read; one that
    /// `known(tenant, name, stamp, Some(raw_hash))` recognises by its bytes is not parsed.
    pub fn scan(&self, known: &Known<'_>) -> Scan {
        self.list().read(known)
    }

    /// Lists the ruleset files with their stamps, reading none of them: at start this
    /// runs while the commit log is read.
    pub fn list(&self) -> Listing {
        let mut listing = Listing::default();
        for (tenant, dir) in self.tenant_dirs() {
            if ordo_core::validate_name(&tenant).is_err() {
                listing.problems.push(FileProblem {
                    path: dir,
                    reason: format!("'{tenant}' is not a valid tenant id"),
                });
                continue;
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            // (name, path) of every ruleset file; sorted, the files that define the same
            // name sit together. A start lists thousands of files: one vector, not a map
            // of vectors, keeps it to a few fresh pages.
            let mut files: Vec<(String, PathBuf)> = Vec::new();
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if file_name.starts_with('.') {
                    // A write a crash interrupted (see `recover`).
                    listing.staged |=
                        file_name.ends_with(TMP_SUFFIX) || file_name.ends_with(DEL_SUFFIX);
                    continue;
                }
                if Format::of(&path).is_none() {
                    continue;
                }
                // The entry's type comes with the listing; only a symbolic link (as in
                // a Kubernetes ConfigMap mount) costs a stat to see what it points to.
                let is_file = match entry.file_type() {
                    Ok(t) if t.is_symlink() => path.is_file(),
                    Ok(t) => t.is_file(),
                    Err(_) => path.is_file(),
                };
                if !is_file {
                    continue;
                }
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                files.push((stem, path));
            }
            files.sort_unstable();
            listing.files.reserve(files.len());
            let mut files = files.into_iter().peekable();
            while let Some((name, path)) = files.next() {
                if files.peek().is_some_and(|(next, _)| *next == name) {
                    let reason = format!("more than one file defines ruleset '{name}'");
                    listing.problems.push(FileProblem {
                        path,
                        reason: reason.clone(),
                    });
                    while let Some((_, path)) = files.next_if(|(next, _)| *next == name) {
                        listing.problems.push(FileProblem {
                            path,
                            reason: reason.clone(),
                        });
                    }
                    listing.unusable.insert((tenant.clone(), name));
                    continue;
                }
                let stamp = stamp_of(&path);
                listing.files.push(ListedFile {
                    tenant: tenant.clone(),
                    name,
                    path,
                    stamp,
                });
            }
        }
        listing
    }
}

/// The ruleset files of a directory and their stamps, as listed at one moment.
#[derive(Debug, Default)]
pub struct Listing {
    /// Staged files of interrupted writes were seen: `recover` has work.
    pub staged: bool,
    files: Vec<ListedFile>,
    problems: Vec<FileProblem>,
    unusable: HashSet<(String, String)>,
}

#[derive(Debug)]
struct ListedFile {
    tenant: String,
    name: String,
    path: PathBuf,
    stamp: Option<Stamp>,
}

impl Listing {
    /// Tenant and name of every listed ruleset file.
    pub fn rulesets(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .map(|f| (f.tenant.as_str(), f.name.as_str()))
    }

    /// Reads the listed files that `known` does not recognise (see [`RulesDir::scan`]),
    /// on every core when there are many: a first start reads thousands.
    pub fn read(self, known: &Known<'_>) -> Scan {
        let mut scan = Scan {
            found: Vec::with_capacity(self.files.len()),
            problems: self.problems,
            unusable: self.unusable,
        };
        // Files known by their stamps are not opened: a restart knows them all.
        let mut to_read = Vec::new();
        for ListedFile {
            tenant,
            name,
            path,
            stamp,
        } in self.files
        {
            if !stamp.is_some_and(|stamp| known(&tenant, &name, stamp, None)) {
                to_read.push(scan.found.len());
            }
            scan.found.push(FileRuleSet {
                tenant,
                name,
                path,
                stamp: stamp.unwrap_or(Stamp {
                    size: 0,
                    mtime_ns: 0,
                }),
                raw_hash: None,
                ruleset: None,
            });
        }
        let found = &scan.found;
        let heavy = to_read.len();
        let read = crate::parallel::map(to_read, heavy, |i| {
            let outcome = found.get(i).map(|file| {
                read_text(&file.path).and_then(|text| {
                    let raw_hash = crate::store::content_hash(&text);
                    if known(&file.tenant, &file.name, file.stamp, Some(&raw_hash)) {
                        return Ok((raw_hash, None));
                    }
                    parse_ruleset(&text, &file.path, &file.tenant)
                        .map(|r| (raw_hash, Some(Box::new(r))))
                })
            });
            (i, outcome)
        });
        let mut failed = Vec::new();
        for (i, outcome) in read {
            match (outcome, scan.found.get_mut(i)) {
                (Some(Ok((raw_hash, ruleset))), Some(file)) => {
                    file.raw_hash = Some(raw_hash);
                    file.ruleset = ruleset;
                }
                (Some(Err(reason)), _) => failed.push((i, reason)),
                _ => {}
            }
        }
        if !failed.is_empty() {
            // Files that could not be read or parsed are problems, not rulesets.
            let mut failed = failed.into_iter().peekable();
            let mut usable = Vec::with_capacity(scan.found.len());
            for (i, file) in scan.found.into_iter().enumerate() {
                match failed.next_if(|(j, _)| *j == i) {
                    Some((_, reason)) => {
                        scan.problems.push(FileProblem {
                            path: file.path,
                            reason,
                        });
                        scan.unusable.insert((file.tenant, file.name));
                    }
                    None => usable.push(file),
                }
            }
            scan.found = usable;
        }
        scan
    }
}

/// Size and modification time, when the file system gives them.
pub fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?;
    let mtime_ns = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())?;
    Some(Stamp {
        size: meta.len(),
        mtime_ns,
    })
}

/// Reads a ruleset file's text, refusing oversized files.
fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let too_big =
        |size: u64| format!("file is {size} bytes, more than the {MAX_FILE_BYTES} allowed");
    // Sized and read through one handle: one lookup of the path, and a file that grows
    // after the check is still read no further than the limit.
    let file = File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size > MAX_FILE_BYTES {
        return Err(too_big(size));
    }
    let mut text = String::with_capacity(usize::try_from(size).unwrap_or(0));
    (&file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let read = u64::try_from(text.len()).unwrap_or(u64::MAX);
    if read > MAX_FILE_BYTES {
        return Err(too_big(read));
    }
    Ok(text)
}

/// Parses and checks one ruleset file's text, as the file `as_file`; sets its
/// `tenant_id` to the directory's tenant. Compilation is checked by the caller.
fn parse_ruleset(text: &str, as_file: &Path, tenant: &str) -> Result<RuleSet, String> {
    let format = Format::of(as_file).ok_or("not a .json, .yaml or .yml file")?;
    let mut ruleset = match format {
        Format::Json => RuleSet::from_json(text),
        Format::Yaml => RuleSet::from_yaml(text),
    }
    .map_err(|e| e.to_string())?;
    let target_name = as_file
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if ruleset.config.name != target_name {
        return Err(format!(
            "the file name says '{target_name}' but config.name is '{}'; they must match",
            ruleset.config.name
        ));
    }
    match ruleset.config.tenant_id.as_deref() {
        Some(t) if t != tenant => {
            return Err(format!(
                "config.tenant_id is '{t}' but the file is in tenant '{tenant}''s directory"
            ));
        }
        _ => ruleset.config.tenant_id = Some(tenant.to_string()),
    }
    Ok(ruleset)
}

/// The canonical stored form of a ruleset: compact JSON of the model, keys in model order.
pub fn canonical_json(ruleset: &RuleSet) -> String {
    // The model holds only strings, numbers and our own values: always serializable.
    serde_json::to_string(ruleset).unwrap_or_default()
}

fn staged_path(target: &Path, suffix: &str) -> PathBuf {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}{suffix}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A change to one ruleset's file, made after its commit.
pub enum FileChange {
    Put {
        tenant: String,
        name: String,
        model: Box<RuleSet>,
    },
    Delete {
        tenant: String,
        name: String,
    },
}

impl FileChange {
    /// The change that makes `tenant/name`'s file hold `content`, a stored ruleset's
    /// canonical JSON (`None`: no file).
    pub fn to_match(tenant: &str, name: &str, content: Option<&str>) -> Result<FileChange, String> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        Ok(match content {
            Some(content) => FileChange::Put {
                model: Box::new(RuleSet::from_json(content).map_err(|e| e.to_string())?),
                tenant,
                name,
            },
            None => FileChange::Delete { tenant, name },
        })
    }
}

impl RulesDir {
    /// Makes `change` (stage, fsync, rename, directory fsync). `noted` learns the
    /// target and its finished stamp just before the rename.
    pub fn apply(
        &self,
        change: &FileChange,
        noted: impl FnOnce(&Path, Option<Stamp>),
    ) -> io::Result<()> {
        let staged = match change {
            FileChange::Put {
                tenant,
                name,
                model,
            } => Some(self.prepare_put(tenant, name, model)?),
            FileChange::Delete { tenant, name } => self.prepare_delete(tenant, name)?,
        };
        let Some(staged) = staged else {
            return Ok(());
        };
        noted(staged.target(), staged.finished_stamp());
        staged.finish()
    }
}

/// Replaces `path` with `bytes` atomically and durably (temp file, fsync, rename,
/// directory fsync), creating its directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
    fs::create_dir_all(dir)?;
    let staged = staged_path(path, TMP_SUFFIX);
    let mut file = File::create(&staged)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&staged, path)?;
    sync_dir(dir)
}
