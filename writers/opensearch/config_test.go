package opensearch

import "testing"

// TestConfigValidate: the block's own rules, with paths inside the block.
func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := Config{URL: "http://127.0.0.1:9200", Index: "i", ID: "{id}"}
		c.SetDefaults(false)
		return c
	}
	for _, tt := range []struct {
		name   string
		change func(*Config)
		path   string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"create with version_field", func(c *Config) { c.Action, c.VersionField = "create", "v" }, "version_field"},
		{"index with version_field", func(c *Config) { c.VersionField = "v" }, ""},
		{"bad action", func(c *Config) { c.Action = "upsert" }, "action"},
		{"sigv4 and basic auth", func(c *Config) { c.SigV4, c.Username, c.Password = &SigV4{Service: "es"}, "u", "p" }, "sigv4"},
		{"negative retries", func(c *Config) { c.MaxRetries = -1 }, "max_retries"},
		{"empty fan-out", func(c *Config) { c.Fanout = []string{"a", ""} }, "also_index[1]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.change(&c)
			is := c.Validate()
			switch {
			case tt.path == "" && len(is) > 0:
				t.Errorf("want no issue, got %v", is)
			case tt.path != "" && (len(is) != 1 || is[0].Path != tt.path):
				t.Errorf("want one issue at %s, got %v", tt.path, is)
			}
		})
	}
}

// TestSetDefaultsKeepsExplicitZeroRetries: max_retries 0 means none.
func TestSetDefaultsKeepsExplicitZeroRetries(t *testing.T) {
	var set, unset Config
	set.SetDefaults(true)
	unset.SetDefaults(false)
	if set.MaxRetries != 0 || unset.MaxRetries != DefaultMaxRetries {
		t.Errorf("max_retries: set 0 → %d, unset → %d; want 0 and %d", set.MaxRetries, unset.MaxRetries, DefaultMaxRetries)
	}
}
