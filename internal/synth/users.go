package synth

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

var loadRE = regexp.MustCompile(`(?m)^load\(\s*"([^"]+)"`)

// ModuleUsers reads the load statements of the repository at dir and returns,
// for every .cinc module, the names of the configs that load it directly or
// through other modules, sorted. Modules are named by their path under
// source/ ("lib/jobs_011.cinc"). It reads any repository whose load
// statements start their lines, not only generated ones.
func ModuleUsers(dir string) (map[string][]string, error) {
	src := filepath.Join(dir, "source")
	loads := map[string][]string{} // file under source/ -> loaded .cinc files
	var configs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ext := filepath.Ext(p)
		if ext != ".cinc" && ext != ".cconf" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		if ext == ".cconf" {
			configs = append(configs, rel)
		}
		for _, m := range loadRE.FindAllSubmatch(data, -1) {
			target := string(m[1])
			if rest, ok := strings.CutPrefix(target, "//"); ok {
				target = rest
			} else {
				target = path.Join(path.Dir(rel), target)
			}
			if strings.HasSuffix(target, ".cinc") {
				loads[rel] = append(loads[rel], target)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	users := map[string][]string{}
	for _, cf := range configs {
		name := strings.TrimSuffix(cf, ".cconf")
		seen := map[string]bool{}
		var visit func(f string)
		visit = func(f string) {
			for _, m := range loads[f] {
				if !seen[m] {
					seen[m] = true
					users[m] = append(users[m], name)
					visit(m)
				}
			}
		}
		visit(cf)
	}
	for _, u := range users {
		slices.Sort(u)
	}
	return users, nil
}

// ModuleWithUsers returns the module of the repository at dir whose number of
// users (configs depending on it, see ModuleUsers) is closest to n, with that
// number; among equally close modules it returns the first by path. With the
// default Options and Configs = 10000, some jobs module has about 100 users,
// so ModuleWithUsers(dir, 100) finds a module whose edit recompiles about 100
// configs. The module's file is filepath.Join(dir, "source", module).
func ModuleWithUsers(dir string, n int) (module string, users int, err error) {
	all, err := ModuleUsers(dir)
	if err != nil {
		return "", 0, err
	}
	best := -1
	for m, u := range all {
		d := abs(len(u) - n)
		if bd := abs(best - n); best < 0 || d < bd || d == bd && m < module {
			module, best = m, len(u)
		}
	}
	if best < 0 {
		return "", 0, fs.ErrNotExist
	}
	return module, best, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
