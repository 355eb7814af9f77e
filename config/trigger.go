package config

import (
	"sort"
	"strconv"

	"go.starlark.net/starlark"
)

// triggerStepKind is trigger(schedulers, ...): it asks triggerable
// schedulers for buildsets and, with wait_for_finish, waits for them.
var triggerStepKind = &stepKind{
	name: "trigger",
	params: []param{
		{name: "schedulers", required: true, positional: true},
		{name: "wait_for_finish"},
		{name: "set_properties"},
		{name: "update_sourcestamp"},
		{name: "always_use_latest"},
	},
	action: triggerAction,
}

// TriggerAction is trigger(schedulers, ...).
type TriggerAction struct {
	Schedulers        []string // names of triggerable() schedulers
	WaitForFinish     bool
	SetProperties     map[string]any        // JSON-like values
	SetPropertiesR    map[string]Renderable // build-time values; keys not in SetProperties
	UpdateSourcestamp bool
	AlwaysUseLatest   bool
}

// Kind implements StepAction.
func (*TriggerAction) Kind() string { return "trigger" }

func triggerAction(c *call) (StepAction, []starlark.Value) {
	a := &TriggerAction{
		WaitForFinish:     c.bool("wait_for_finish", false),
		UpdateSourcestamp: c.bool("update_sourcestamp", true),
		AlwaysUseLatest:   c.bool("always_use_latest", false),
	}
	v, ok := c.given("schedulers")
	if ok {
		seq, isSeq := asSequence(v)
		switch {
		case !isSeq:
			c.argErrorf("schedulers", "want list of scheduler names, got %s", v.Type())
		case seq.Len() == 0:
			c.argErrorf("schedulers", "empty list; want at least one triggerable scheduler")
		default:
			seen := map[string]bool{}
			for i := range seq.Len() {
				e := seq.Index(i)
				name, isStr := starlark.AsString(e)
				if o, isObj := e.(*object); isObj && o.typ == "triggerable" {
					name, isStr = o.item.(*Triggerable).Name, true
				}
				arg := "schedulers[" + strconv.Itoa(i) + "]"
				switch {
				case !isStr:
					c.argErrorf(arg, "want a scheduler name, got %s", e.Type())
				case name == "":
					c.argErrorf(arg, "empty scheduler name")
				case seen[name]:
					c.argErrorf(arg, "scheduler %q is listed twice", name)
				default:
					seen[name] = true
					a.Schedulers = append(a.Schedulers, name)
				}
			}
		}
	}
	if pv, ok := c.given("set_properties"); ok {
		d, isDict := pv.(*starlark.Dict)
		if !isDict {
			c.argErrorf("set_properties", "want dict, got %s", pv.Type())
		} else {
			for _, kv := range d.Items() {
				k, isStr := starlark.AsString(kv[0])
				if !isStr {
					c.argErrorf("set_properties", "want string keys, got %s key %s", kv[0].Type(), kv[0])
					continue
				}
				if !c.propertyName("set_properties", k) {
					continue
				}
				x, r, ok := c.propValue("set_properties["+strconv.Quote(k)+"]", kv[1])
				switch {
				case !ok:
				case r != nil:
					if a.SetPropertiesR == nil {
						a.SetPropertiesR = map[string]Renderable{}
					}
					a.SetPropertiesR[k] = r
				default:
					if a.SetProperties == nil {
						a.SetProperties = map[string]any{}
					}
					a.SetProperties[k] = x
				}
			}
		}
	}
	if !ok {
		return a, nil
	}
	return a, []starlark.Value{v}
}

// validateTriggers checks that every trigger step of the builders names
// triggerable() schedulers.
func (l *loader) validateTriggers(cfg *Config, schedulers map[string]Scheduler) {
	var triggerable []string
	for name, s := range schedulers {
		if _, ok := s.(*Triggerable); ok {
			triggerable = append(triggerable, name)
		}
	}
	sort.Strings(triggerable)
	reported := map[string]bool{} // a step value may be shared by builders
	for _, b := range cfg.Builders {
		for _, st := range b.Steps {
			a, ok := st.Action.(*TriggerAction)
			if !ok {
				continue
			}
			for _, name := range a.Schedulers {
				key := st.Pos.String() + "\x00" + name
				if reported[key] {
					continue
				}
				switch s := schedulers[name]; {
				case s == nil:
					reported[key] = true
					l.errs.addf(st.Pos, "trigger: schedulers: unknown scheduler %q%s", name, didYouMean(name, triggerable))
				default:
					if _, ok := s.(*Triggerable); !ok {
						reported[key] = true
						l.errs.addf(st.Pos, "trigger: schedulers: %q is a %s() scheduler; trigger needs triggerable() ones", name, s.(declared).kind())
					}
				}
			}
		}
	}
}
