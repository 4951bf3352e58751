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
//     revision, one at a time or as an fs.FS;
//   - Repo.Commit: one commit of exactly the given paths, additions and
//     deletions, leaving everything else in the index and work tree alone;
//   - Repo.Identity and ParseSignature: the commit author;
//   - Repo.Log: the commits that changed a file, newest first.
//
// Ignored files are those of .gitignore files and .git/info/exclude;
// core.excludesFile is not read.
//
// Revisions are what git rev-parse accepts for commits: HEAD, branch and tag
// names, full or abbreviated hashes, and suffixes such as HEAD~2 or main^.
package gitrepo
