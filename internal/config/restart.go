package config

import (
	"reflect"
	"strings"
	"time"
)

// RestartKey is a key a reload does not apply, as its `reload` tag says.
type RestartKey struct {
	// Key is the config key, dotted.
	Key string
	// When is the key that must be set in the running configuration for
	// this one to need a restart; "" = always.
	When string
}

// RestartKeysList returns every key a reload does not apply, in the order
// of the Config struct (the README's Configuration section lists them; a
// test keeps the two equal).
func RestartKeysList() []RestartKey {
	var out []RestartKey
	walk("", reflect.TypeOf(Config{}), func(key string, f reflect.StructField, _ []int) {
		if rk, ok := restartTag(key, f); ok {
			out = append(out, rk)
		}
	})
	return out
}

// RestartKeys names the keys that differ between the running configuration
// old and the reloaded c but are read only at start-up, so that a reload
// never ignores a change silently. A conditional key is named as
// "KEY (WHEN)" and only when WHEN is set in old.
func RestartKeys(old, c *Config) []string {
	var keys []string
	vo, vc := reflect.ValueOf(old).Elem(), reflect.ValueOf(c).Elem()
	walk("", reflect.TypeOf(Config{}), func(key string, f reflect.StructField, index []int) {
		rk, ok := restartTag(key, f)
		if !ok || reflect.DeepEqual(vo.FieldByIndex(index).Interface(), vc.FieldByIndex(index).Interface()) {
			return
		}
		if rk.When == "" {
			keys = append(keys, key)
			return
		}
		if w, ok := lookup(vo, rk.When); ok && !w.IsZero() {
			keys = append(keys, key+" ("+rk.When+")")
		}
	})
	return keys
}

// restartTag reads a field's `reload` tag.
func restartTag(key string, f reflect.StructField) (RestartKey, bool) {
	tag := f.Tag.Get("reload")
	switch {
	case tag == "restart":
		return RestartKey{Key: key}, true
	case strings.HasPrefix(tag, "restart:"):
		return RestartKey{Key: key, When: strings.TrimPrefix(tag, "restart:")}, true
	}
	return RestartKey{}, false
}

// walk calls fn for every leaf key of t (mapstructure tags joined with
// "."), with its field and index path.
func walk(prefix string, t reflect.Type, fn func(key string, f reflect.StructField, index []int), index ...int) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			walk(key, f.Type, fn, idx...)
			continue
		}
		fn(key, f, idx)
	}
}

// lookup returns the field of v (a Config) named by a dotted key.
func lookup(v reflect.Value, key string) (reflect.Value, bool) {
	var found reflect.Value
	walk("", v.Type(), func(k string, _ reflect.StructField, index []int) {
		if k == key {
			found = v.FieldByIndex(index)
		}
	})
	return found, found.IsValid()
}
