// Package gitrepo is cfg's access to git, through go-git: it opens the git
// repository holding a config repository and speaks in paths relative to the
// config repository's root, slash-separated, whatever the config
// repository's place inside the git work tree.
//
// It offers:
//
//   - Open: the repository holding a config repository root (the root may
//     be the top of the git work tree or any directory below it);
//   - Repo.WorkingChanges: files of the working tree that differ from HEAD
//     (modified, added, deleted, and untracked files that are not ignored);
//   - Repo.ChangesSince: files that differ between a revision and HEAD;
//   - Repo.WorkingChangesSince: files of the working tree that differ from
//     a revision (committed since, or not committed yet);
//   - Repo.ReadFile and Repo.FS: files of the config repository at a
//     revision, one at a time or as an fs.FS; Repo.FilesAt: files at a
//     revision with their modes, to commit them back (a revert);
//   - Repo.Head: the branch HEAD names and its commit, read as git reads
//     them (a ref caught while another program rewrites it is an error,
//     never a branch without commits);
//   - Repo.ChangesTo and Repo.CommitFiles: one commit of exactly the given
//     files (bytes held in memory, not read from the work tree), additions
//     and deletions, on the parent the caller read, leaving everything else
//     in the index and work tree alone; Repo.Commit does the same with the
//     files of the work tree;
//   - Repo.Lock: the commit lock, one commit at a time per repository, with
//     recovery after a holder that died;
//   - Repo.CheckState: whether a commit now would be wrong (a merge,
//     cherry-pick, revert, rebase, am or bisect in progress, unresolved
//     conflicts, a detached HEAD);
//   - Repo.Identity and ParseSignature: the commit author;
//   - Repo.Log: the commits that changed a file, newest first.
//
// Ignored files are those of .gitignore files and .git/info/exclude;
// core.excludesFile is not read.
//
// Commits interoperate with command-line git: CommitFiles takes git's lock
// files (index.lock, then the branch's ref .lock) as git does, updates the
// index and the branch by writing a lock file and renaming it into place,
// appends to the reflogs, and moves the branch only if it still points at
// the parent (compare-and-swap). It reads HEAD, refs and packed-refs
// itself rather than through go-git, which rewrites ref files in place.
//
// Revisions are what git rev-parse accepts for commits: HEAD, branch and tag
// names, full or abbreviated hashes, and suffixes such as HEAD~2 or main^.
package gitrepo
