//! Independent pieces of work spread over the machine's cores: a first start or a
//! reload may have thousands of rules files to read, parse and compile, each on its own.

/// Fewer heavy items than this per thread, and the work stays on the calling thread:
/// starting a thread costs about as much as reading and compiling a few files.
const MIN_PER_THREAD: usize = 32;

/// The cores this process may use (a cgroup's CPU quota included), read once: the
/// standard library reads several files under `/proc` and `/sys` at every call.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `f` over `items`, results in the items' order. `heavy` says how many of them are
/// real work (the rest being cheap, such as files known by their stamp): it decides
/// how many threads are worth starting, up to one per core. Items are split into
/// equal runs, one per thread; the calling thread takes the first.
pub fn map<T: Send, U: Send>(items: Vec<T>, heavy: usize, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    // Too little for two threads (a restart, whose files are known by their stamp):
    // decided before `cores()`, whose first call reads the cgroup files.
    let threads = if heavy < 2 * MIN_PER_THREAD {
        1
    } else {
        cores().min(heavy / MIN_PER_THREAD)
    };
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let mut runs: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let run: Vec<T> = items.by_ref().take(per_thread).collect();
        if run.is_empty() {
            break;
        }
        runs.push(run);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let mut runs = runs.into_iter();
        let first = runs.next().unwrap_or_default();
        // A run whose thread cannot be started is done here, after the first.
        let mut here = Vec::new();
        let spawned: Vec<_> = runs
            .filter_map(|run| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<T>>(1);
                let started = std::thread::Builder::new()
                    .name("ordo-parallel".into())
                    .spawn_scoped(scope, move || match rx.recv() {
                        Ok(run) => run.into_iter().map(f).collect::<Vec<U>>(),
                        Err(_) => Vec::new(),
                    });
                match started {
                    Ok(handle) => match tx.send(run) {
                        Ok(()) => Some(handle),
                        Err(std::sync::mpsc::SendError(run)) => {
                            here.push(run);
                            None
                        }
                    },
                    Err(_) => {
                        here.push(run);
                        None
                    }
                }
            })
            .collect();
        let mut out: Vec<U> = first.into_iter().map(f).collect();
        for handle in spawned {
            match handle.join() {
                Ok(done) => out.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        for run in here {
            out.extend(run.into_iter().map(f));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = map(items, 1000, |i| i * 2);
        assert_eq!(doubled, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn light_work_stays_on_the_calling_thread() {
        let here = std::thread::current().id();
        let threads = map((0..1000).collect::<Vec<u32>>(), 3, |_| {
            std::thread::current().id()
        });
        assert!(threads.iter().all(|t| *t == here));
    }

    #[test]
    fn heavy_work_uses_every_core() {
        let cores = cores();
        let threads = map((0..1000).collect::<Vec<u32>>(), 1000, |_| {
            std::thread::current().id()
        });
        let distinct: std::collections::HashSet<_> = threads.into_iter().collect();
        assert_eq!(distinct.len(), cores.min(1000 / MIN_PER_THREAD));
    }

    #[test]
    fn an_empty_list_is_fine() {
        assert!(map(Vec::<u32>::new(), 0, |i| i).is_empty());
        assert!(map(Vec::<u32>::new(), 1000, |i| i).is_empty());
    }
}
