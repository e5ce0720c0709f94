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
}
