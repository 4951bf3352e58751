package compiler

import (
	"strings"
	"testing"
	"testing/fstest"
)

// TestStoppedModuleRunsAgain attacks the rule that a module or a validator
// file stopped by a limit of the config that ran it is not remembered as
// broken: the stop says nothing about the file, so the next config that
// loads it runs it again and compiles. The stop is staged by running the
// files on behalf of a job stopped already, as a config's job is when its
// time or the compile's memory runs out while one of its threads runs them.
func TestStoppedModuleRunsAgain(t *testing.T) {
	fsys := fstest.MapFS{
		"source/s.thrift": {Data: []byte("struct Job {\n  1: required string name\n}\n")},
		"source/s.thrift-cvalidator": {Data: []byte(`load("s.thrift", "Job")

def check(job):
    if job.name != "job":
        fail("name %r, want job" % job.name)

add_validator(Job, check)
`)},
		"source/lib/name.cinc": {Data: []byte("NAME = \"job\"\n")},
		"source/a.cconf": {Data: []byte(`load("//lib/name.cinc", "NAME")
load("//s.thrift", "Job")
export(Job(name = NAME))
`)},
		"source/b.cconf": {Data: []byte(`load("//s.thrift", "Job")
export(Job(name = "bad"))
`)},
	}
	c := New(fsys, Options{Jobs: 1})
	stopped := &job{name: "other"}
	stopped.stop(&limitError{msg: `config "other" stopped: it ran longer than the time limit of 1s (--timeout)`})

	if _, err := c.loadModule("source/lib/name.cinc", stopped); !isLimit(err) {
		t.Fatalf("the module run for a stopped config: %v, want the limit", err)
	}
	if _, err := c.loadValidators("source/s.thrift", stopped); !isLimit(err) {
		t.Fatalf("the validators run for a stopped config: %v, want the limit", err)
	}

	// The next configs run the module and the validators again: a
	// compiles, and b fails its validator, not the limit.
	if o := c.Compile("source/a.cconf"); len(o.Diags) > 0 || string(o.Data) != "{\n  \"name\": \"job\"\n}\n" {
		t.Errorf("a: %q, %v; want it compiled", o.Data, o.Diags)
	}
	if o := c.Compile("source/b.cconf"); len(o.Diags) != 1 || !strings.Contains(o.Diags[0].Msg, `validator failed: name "bad", want job`) {
		t.Errorf("b: %v; want the failure of its validator", o.Diags)
	}
}
