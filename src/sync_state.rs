//! Whether a folder is in sync, judged from what the engine's interface
//! shows ([`crate::engine_api::FolderState`]). A pure rule, so that it can
//! be tested on the snippets seen with the real engine.
//!
//! The engine's own "nothing left" signals (`down_status` 100, `downdiff`
//! 0) said so for 30 s on a first join while every file was missing. What
//! was never early, in any run with 1.4.111: every online peer finished an
//! exchange (`lastsynctime`) since the engine started or the folder was
//! added, with nothing left to get from it (`downdiff` 0, no `downfiles`
//! key). It became true 1.6 to 4.7 s after the files were all there.
//!
//! Also here: when a folder's first exchange did not start ([`peers_unnamed`],
//! [`Unstick`]), for init and the two-engine test alike.

use std::time::{Duration, Instant};

use crate::engine_api::FolderState;

/// The one-word answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncWord {
    /// Every online peer completed an exchange since `since` and has
    /// nothing this node lacks.
    Synced,
    /// Some online peer has something this node lacks.
    Syncing,
    /// No peer online, or no exchange completed since `since`: a caller
    /// that waits for `Synced` needs a timeout.
    Unknown,
}

impl SyncWord {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncWord::Synced => "synced",
            SyncWord::Syncing => "syncing",
            SyncWord::Unknown => "unknown",
        }
    }
}

/// The verdict on one folder, with the figures behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    pub word: SyncWord,
    pub peers_online: usize,
    /// Every peer the engine lists, online or not.
    pub peers_known: usize,
    /// The most files any online peer has left to give (`None`: no peer
    /// online).
    pub files_left: Option<u64>,
    /// The most bytes any online peer has left to give (`None`: no peer
    /// online). The engine's figure lags: it can be 0 while files are
    /// missing, and stay above 0 after they arrived.
    pub bytes_left: Option<u64>,
    /// The latest completed exchange with any peer, unix seconds (`None`:
    /// never).
    pub last_sync: Option<u64>,
}

/// Judge `folder`; `since` (unix seconds) is the later of when the engine
/// started and when the folder was added to it: an exchange before that
/// says nothing about the files there now.
pub fn judge(folder: &FolderState, since: u64) -> Judgement {
    // An offline peer can give nothing, so it neither holds the folder
    // back nor vouches for it.
    let online: Vec<_> = folder.peers.iter().filter(|p| p.online).collect();
    let work_left = online
        .iter()
        .any(|p| p.down_bytes > 0 || p.down_files.is_some());
    let all_exchanged = online.iter().all(|p| p.last_sync >= since);
    let word = if online.is_empty() {
        SyncWord::Unknown
    } else if work_left {
        SyncWord::Syncing
    } else if all_exchanged {
        SyncWord::Synced
    } else {
        SyncWord::Unknown
    };
    let most =
        |figure: fn(&crate::engine_api::PeerState) -> u64| online.iter().map(|p| figure(p)).max();
    Judgement {
        word,
        peers_online: online.len(),
        peers_known: folder.peers.len(),
        files_left: most(|p| p.down_files.unwrap_or(0)),
        bytes_left: most(|p| p.down_bytes),
        last_sync: folder
            .peers
            .iter()
            .map(|p| p.last_sync)
            .max()
            .filter(|&t| t > 0),
    }
}

/// Is `name` an address (`127.0.0.1:52696`, `[::1]:4000`) rather than a
/// device name? 1.4.111 lists a peer under its address until the peer's
/// `id` message arrived (the first thing an exchange does), then under the
/// device name it gave.
pub fn is_address(name: &str) -> bool {
    if name.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    // An IPv6 address may come without brackets: the port is after the last colon.
    name.rsplit_once(':').is_some_and(|(host, port)| {
        host.parse::<std::net::IpAddr>().is_ok() && port.parse::<u16>().is_ok()
    })
}

/// Is some peer online and is every online peer still listed under its
/// address? Then no exchange with any of them has begun: with 1.4.111
/// that lasted for good in about 1 run in 50 of two fresh engines given a
/// folder at once (both dial, each picks the other's connection, the first
/// request goes unanswered and is never retried). A peer without a name
/// is taken as named: nothing is known against it.
pub fn peers_unnamed(folder: &FolderState) -> bool {
    let mut online = folder.peers.iter().filter(|p| p.online).peekable();
    online.peek().is_some() && online.all(|p| p.name.as_deref().is_some_and(is_address))
}

/// Does `dir` hold nothing but the engine's `.sync`? Only such a folder is
/// taken up again: a node that takes up again a folder holding files shows
/// its peers, for a moment, a folder with nothing in it. Seen with 1.4.111
/// in 3 of the 4 runs that did so on the sender: the fresh receiver
/// completed an exchange within 1-3 s, with nothing left, and the sync rule
/// said `synced` with every file missing. A folder with nothing says the truth.
/// The empty data folder `add` makes (`path --data`) is nothing too.
/// Unreadable: taken as holding something.
pub fn holds_nothing(dir: &std::path::Path) -> bool {
    let empty_dir = |path: &std::path::Path| {
        std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir())
            && std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
    };
    std::fs::read_dir(dir).is_ok_and(|mut entries| {
        entries.all(|entry| {
            entry.is_ok_and(|entry| {
                entry.file_name() == ".sync"
                    || (entry.file_name() == crate::layout::DATA_FOLDER && empty_dir(&entry.path()))
            })
        })
    })
}

/// Every online peer unnamed for this long (plus [`random_wait`]) and the
/// folder is taken up again. Seen with two fresh 1.4.111 engines: the peer
/// is listed about 1 s after the add, and named within 5 s when the first
/// exchange works at once (about 35 % of runs); otherwise it stays unnamed
/// until the engine's retry at about +34 s (about 60 %) or for good.
pub const UNSTICK_AFTER: Duration = Duration::from_secs(8);
/// The most [`random_wait`] adds: two nodes that take their folder up
/// again at the same moment dial each other at once again, and may cross
/// again (seen without it: 2 to 3 rounds).
pub const UNSTICK_SPREAD: Duration = Duration::from_secs(8);
/// At most this many times per folder and engine run: a peer that stays
/// unnamed for another reason must not make the engine drop and take up
/// the folder forever.
pub const UNSTICK_MAX: u32 = 5;

/// A random wait from 0 to [`UNSTICK_SPREAD`], to the millisecond. It
/// needs no secrecy: without the OS source it is taken from the clock.
pub fn random_wait() -> Duration {
    let spread = u64::try_from(UNSTICK_SPREAD.as_millis()).unwrap_or(u64::MAX);
    let random = rand::TryRng::try_next_u64(&mut rand::rngs::SysRng).unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()))
    });
    Duration::from_millis(random % (spread + 1))
}

/// One folder watched for a first exchange that does not start: since
/// when every online peer has been unnamed, and how often the folder was
/// taken up again (removed and given again, which makes the engine find
/// its peers anew and ask them for their state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstick {
    unnamed_since: Option<Instant>,
    patience: Duration,
    count: u32,
}

impl Unstick {
    /// A folder just given; `random` from [`random_wait`].
    pub fn new(random: Duration) -> Unstick {
        Unstick {
            unnamed_since: None,
            patience: UNSTICK_AFTER + random.min(UNSTICK_SPREAD),
            count: 0,
        }
    }

    /// What a look at the folder found ([`peers_unnamed`]; `false` when the
    /// folder could not be seen). The clock runs from the first look that
    /// found every peer unnamed, and starts over at any look that did not.
    pub fn look(&mut self, unnamed: bool, now: Instant) {
        if !unnamed {
            self.unnamed_since = None;
        } else if self.unnamed_since.is_none() {
            self.unnamed_since = Some(now);
        }
    }

    /// Should the folder be taken up again now?
    pub fn due(&self, now: Instant) -> bool {
        self.count < UNSTICK_MAX
            && self
                .unnamed_since
                .is_some_and(|since| now.duration_since(since) >= self.patience)
    }

    /// Is a clock running that may still end in taking the folder up again?
    /// Then the folder must be looked at even when nobody asks.
    pub fn waiting(&self) -> bool {
        self.count < UNSTICK_MAX && self.unnamed_since.is_some()
    }

    /// Can the folder still be taken up again in this engine run?
    pub fn left(&self) -> bool {
        self.count < UNSTICK_MAX
    }

    /// The folder is being taken up again: which time this is (1 for the
    /// first). The clock starts over, with a new `random` part.
    pub fn taken_up_again(&mut self, random: Duration) -> u32 {
        self.count += 1;
        self.unnamed_since = None;
        self.patience = UNSTICK_AFTER + random.min(UNSTICK_SPREAD);
        self.count
    }

    /// How many times it was taken up again.
    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine_api::PeerState;
    use crate::keys::Key;

    /// When the folder was added to the receiver in these cases.
    const ADDED: u64 = 1_796_200_500;

    fn folder(peers: Vec<PeerState>) -> FolderState {
        FolderState {
            path: "/data/ns".into(),
            key: Key::parse("AHRAXZOGOMZ7B7VIFL5JK7VRH5URQVHMA").expect("key"),
            files: 0,
            size: 0,
            peers,
        }
    }

    /// A peer as the engine lists it: online, nothing left, never synced.
    fn peer() -> PeerState {
        PeerState {
            online: true,
            last_sync: 0,
            down_bytes: 0,
            down_files: None,
            name: Some("sender".into()),
            id: None,
        }
    }

    #[test]
    fn first_join_before_any_exchange_is_unknown_although_nothing_seems_left() {
        // +0.0 s of the note's table: down_status 100, downdiff 0,
        // lastsynctime 0, while all 501 files were missing.
        let judged = judge(&folder(vec![peer()]), ADDED);
        assert_eq!(judged.word, SyncWord::Unknown);
        assert_eq!(judged.last_sync, None);
        assert_eq!((judged.peers_online, judged.peers_known), (1, 1));
    }

    #[test]
    fn a_downfiles_key_means_syncing_even_at_zero() {
        // +30.5 s: everything left.
        let mut busy = peer();
        busy.down_bytes = 214_747_554;
        busy.down_files = Some(501);
        let judged = judge(&folder(vec![busy.clone()]), ADDED);
        assert_eq!(judged.word, SyncWord::Syncing);
        assert_eq!(judged.files_left, Some(501));
        assert_eq!(judged.bytes_left, Some(214_747_554));

        // +40.0 s: downdiff stuck while downfiles counts down.
        busy.down_bytes = 3_897_800;
        busy.down_files = Some(368);
        assert_eq!(
            judge(&folder(vec![busy.clone()]), ADDED).word,
            SyncWord::Syncing
        );

        // +45.5 s: "downfiles": 0 while the key is there; the exchange has
        // not completed (and a lastsynctime from earlier does not help).
        busy.down_bytes = 0;
        busy.down_files = Some(0);
        busy.last_sync = ADDED + 10;
        let judged = judge(&folder(vec![busy]), ADDED);
        assert_eq!(judged.word, SyncWord::Syncing);
        assert_eq!(judged.files_left, Some(0));
    }

    #[test]
    fn bytes_left_alone_mean_syncing() {
        let mut busy = peer();
        busy.down_bytes = 5000;
        busy.last_sync = ADDED + 10;
        assert_eq!(judge(&folder(vec![busy]), ADDED).word, SyncWord::Syncing);
    }

    #[test]
    fn an_exchange_before_since_is_unknown() {
        // A lastsynctime from before the engine started (or the folder was
        // added) tells nothing about the files there now.
        let mut stale = peer();
        stale.last_sync = ADDED - 1;
        let judged = judge(&folder(vec![stale]), ADDED);
        assert_eq!(judged.word, SyncWord::Unknown);
        assert_eq!(judged.last_sync, Some(ADDED - 1));
    }

    #[test]
    fn a_completed_exchange_since_with_nothing_left_is_synced() {
        // +50.5 s: downdiff 0, lastsynctime set, the downfiles key gone.
        let mut done = peer();
        done.last_sync = ADDED + 62;
        let judged = judge(&folder(vec![done.clone()]), ADDED);
        assert_eq!(judged.word, SyncWord::Synced);
        assert_eq!(judged.files_left, Some(0));
        assert_eq!(judged.bytes_left, Some(0));
        assert_eq!(judged.last_sync, Some(ADDED + 62));

        // `since` itself counts: the engine stores whole seconds.
        done.last_sync = ADDED;
        assert_eq!(judge(&folder(vec![done]), ADDED).word, SyncWord::Synced);
    }

    #[test]
    fn every_online_peer_must_have_exchanged() {
        let mut done = peer();
        done.last_sync = ADDED + 5;
        let late = peer();
        let judged = judge(&folder(vec![done, late]), ADDED);
        assert_eq!(judged.word, SyncWord::Unknown);
        assert_eq!(judged.last_sync, Some(ADDED + 5));
    }

    #[test]
    fn offline_peers_are_ignored() {
        let mut done = peer();
        done.last_sync = ADDED + 5;
        // An offline peer that once had files for us cannot give them now.
        let mut gone = peer();
        gone.online = false;
        gone.down_bytes = 1000;
        gone.down_files = Some(3);
        gone.last_sync = ADDED + 9;
        let judged = judge(&folder(vec![done, gone.clone()]), ADDED);
        assert_eq!(judged.word, SyncWord::Synced);
        assert_eq!((judged.peers_online, judged.peers_known), (1, 2));
        assert_eq!(judged.files_left, Some(0));
        assert_eq!(judged.bytes_left, Some(0));
        // It still counts for when the last exchange was.
        assert_eq!(judged.last_sync, Some(ADDED + 9));

        let judged = judge(&folder(vec![gone]), ADDED);
        assert_eq!(judged.word, SyncWord::Unknown);
        assert_eq!(judged.files_left, None);
        assert_eq!(judged.bytes_left, None);
    }

    #[test]
    fn no_peer_is_unknown() {
        let judged = judge(&folder(vec![]), ADDED);
        assert_eq!(judged.word, SyncWord::Unknown);
        assert_eq!((judged.peers_online, judged.peers_known), (0, 0));
        assert_eq!(judged.files_left, None);
        assert_eq!(judged.bytes_left, None);
        assert_eq!(judged.last_sync, None);
    }

    #[test]
    fn one_busy_peer_among_done_ones_is_syncing_with_its_figures() {
        let mut done = peer();
        done.last_sync = ADDED + 5;
        let mut busy = peer();
        busy.last_sync = ADDED + 5;
        busy.down_bytes = 10;
        busy.down_files = Some(2);
        let judged = judge(&folder(vec![done, busy]), ADDED);
        assert_eq!(judged.word, SyncWord::Syncing);
        assert_eq!(judged.files_left, Some(2));
        assert_eq!(judged.bytes_left, Some(10));
    }

    #[test]
    fn words_are_lower_case() {
        assert_eq!(SyncWord::Synced.as_str(), "synced");
        assert_eq!(SyncWord::Syncing.as_str(), "syncing");
        assert_eq!(SyncWord::Unknown.as_str(), "unknown");
    }

    fn named(name: &str, online: bool) -> PeerState {
        PeerState {
            online,
            name: Some(name.into()),
            ..peer()
        }
    }

    #[test]
    fn addresses_are_told_from_device_names() {
        for address in [
            "127.0.0.1:52696",
            "10.0.3.7:3000",
            "[::1]:4000",
            "fe80::1:55555",
        ] {
            assert!(is_address(address), "{address}");
        }
        for name in [
            "node46001",
            "sender",
            "127.0.0.1",
            "host:3000",
            "127.0.0.1:99999",
            "",
        ] {
            assert!(!is_address(name), "{name}");
        }
    }

    #[test]
    fn peers_are_unnamed_only_when_every_online_one_is_an_address() {
        // The stuck run: the peer online, still its address, for 150 s.
        let stuck = folder(vec![named("127.0.0.1:52696", true)]);
        assert!(peers_unnamed(&stuck));
        // After its `id` message: the device name.
        assert!(!peers_unnamed(&folder(vec![named("engine2", true)])));
        // One named online peer is enough: an exchange has begun.
        assert!(!peers_unnamed(&folder(vec![
            named("127.0.0.1:52696", true),
            named("engine2", true)
        ])));
        // Offline peers do not count either way.
        assert!(peers_unnamed(&folder(vec![
            named("127.0.0.1:52696", true),
            named("engine3", false)
        ])));
        assert!(!peers_unnamed(&folder(vec![named(
            "127.0.0.1:52696",
            false
        )])));
        // No peer online: nothing to wait for.
        assert!(!peers_unnamed(&folder(vec![])));
        // No name at all: not taken as unnamed.
        let mut nameless = peer();
        nameless.name = None;
        assert!(!peers_unnamed(&folder(vec![nameless])));
    }

    #[test]
    fn unstick_is_due_after_its_patience_of_unnamed_looks() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut watch = Unstick::new(Duration::from_secs(3));
        assert!(!watch.waiting() && !watch.due(at(100)));
        // Peers named or none: nothing runs.
        watch.look(false, at(0));
        assert!(!watch.waiting());
        // Unnamed from +1 s: due at +1 + 8 + 3, not a moment before.
        watch.look(true, at(1));
        assert!(watch.waiting());
        watch.look(true, at(5));
        assert!(!watch.due(at(11)));
        assert!(watch.due(at(12)));
        // A look that finds a name starts the clock over.
        watch.look(false, at(12));
        assert!(!watch.waiting() && !watch.due(at(30)));
        watch.look(true, at(30));
        assert!(!watch.due(at(40)));
        assert!(watch.due(at(41)));
        // Taken up again: the clock starts over with the new random part.
        assert_eq!(watch.taken_up_again(Duration::from_secs(100)), 1);
        assert_eq!(watch.count(), 1);
        assert!(!watch.waiting() && !watch.due(at(41)));
        watch.look(true, at(42));
        // The random part is at most UNSTICK_SPREAD: 8 + 8.
        assert!(!watch.due(at(57)));
        assert!(watch.due(at(58)));
    }

    #[test]
    fn unstick_stops_after_its_maximum() {
        let start = Instant::now();
        let mut watch = Unstick::new(Duration::ZERO);
        let mut now = start;
        for n in 1..=UNSTICK_MAX {
            watch.look(true, now);
            now += UNSTICK_AFTER;
            assert!(watch.due(now), "round {n}");
            assert_eq!(watch.taken_up_again(Duration::ZERO), n);
        }
        assert!(!watch.left());
        watch.look(true, now);
        assert!(!watch.waiting(), "no clock without a try left");
        assert!(!watch.due(now + Duration::from_secs(3600)));
        assert_eq!(watch.count(), UNSTICK_MAX);
    }

    #[test]
    fn only_a_folder_with_nothing_but_sync_holds_nothing() {
        let dir = std::env::temp_dir().join(format!("syncbox-holds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!holds_nothing(&dir), "a missing folder is not known empty");
        std::fs::create_dir_all(dir.join(".sync")).expect("dir");
        assert!(holds_nothing(&dir));
        std::fs::write(dir.join(".hidden"), b"x").expect("file");
        assert!(!holds_nothing(&dir));
        std::fs::remove_file(dir.join(".hidden")).expect("remove");
        std::fs::create_dir(dir.join("sub")).expect("sub");
        assert!(!holds_nothing(&dir), "an empty subfolder is content too");
        std::fs::remove_dir(dir.join("sub")).expect("remove");
        std::fs::create_dir(dir.join("data")).expect("data");
        assert!(holds_nothing(&dir), "the empty data folder add makes");
        std::fs::write(dir.join("data/PG_VERSION"), b"15").expect("file");
        assert!(!holds_nothing(&dir), "a data folder with a file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn random_waits_stay_within_the_spread() {
        for _ in 0..100 {
            assert!(random_wait() <= UNSTICK_SPREAD);
        }
    }
}
