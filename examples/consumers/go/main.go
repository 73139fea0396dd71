// Command chorus-consumer-go is the Chorus example consumer in Go: CloudEvents 1.0 over
// Kafka, structured mode.
//
// It reads Chorus topics as the read-only principal, read_committed, from the earliest
// offset; parses each record with the CloudEvents SDK (event.Event UnmarshalJSON and
// Validate), checks the Kafka binding (content-type header, key == subject), validates the
// record against its JSON Schema from the schema registry (subject <topic>-<type>,
// TopicRecordNameStrategy) and deduplicates by id. See ../README.md for the command line,
// the output and the exit codes.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

const (
	consumerName = "go"
	contentType  = "application/cloudevents+json"
)

// fatal is a usage or connection error: exit code 2.
type fatal struct{ msg string }

func (f fatal) Error() string { return f.msg }

type args struct {
	bootstrap, username, passwordFile, mechanism, registry, schemaFileDir string
	topicPrefix, group                                                    string
	topics                                                                []string
	untilEnd, quiet                                                       bool
	timeout                                                               time.Duration
}

func parseArgs(argv []string) args {
	fs := flag.NewFlagSet("chorus-consumer-go", flag.ContinueOnError)
	var a args
	var topics string
	var timeoutSeconds float64
	fs.StringVar(&a.bootstrap, "bootstrap", "127.0.0.1:9092", "Kafka bootstrap servers")
	fs.StringVar(&a.username, "username", "reader", "SASL user")
	fs.StringVar(&a.passwordFile, "password-file", "", "file holding the SASL password (required)")
	fs.StringVar(&a.mechanism, "mechanism", "SCRAM-SHA-512", "SCRAM-SHA-512 or PLAIN")
	fs.StringVar(&a.registry, "registry", "http://127.0.0.1:8082", "schema registry base URL")
	fs.StringVar(&a.schemaFileDir, "schema-file-dir", "", "fallback: read the schema of type T from DIR/T.json instead of the registry")
	fs.StringVar(&a.topicPrefix, "topic-prefix", "", "deployment prefix of topics and the group")
	fs.StringVar(&a.group, "group", "chorus-reader-go", "consumer group, after the topic prefix")
	fs.StringVar(&topics, "topics", "chorus.chat.messages,chorus.poi.scores", "comma-separated, without the prefix")
	fs.BoolVar(&a.untilEnd, "until-end", false, "read every partition from the beginning to its end, then exit")
	fs.BoolVar(&a.quiet, "quiet", false, "no per-record line")
	fs.Float64Var(&timeoutSeconds, "timeout-seconds", 120, "with --until-end: give up (exit 1) after this long")
	if err := fs.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	for _, t := range strings.Split(topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			a.topics = append(a.topics, t)
		}
	}
	if a.passwordFile == "" || len(a.topics) == 0 || fs.NArg() > 0 || timeoutSeconds <= 0 ||
		(a.mechanism != "SCRAM-SHA-512" && a.mechanism != "PLAIN") {
		fs.Usage()
		os.Exit(2)
	}
	a.registry = strings.TrimRight(a.registry, "/")
	a.timeout = time.Duration(timeoutSeconds * float64(time.Second))
	return a
}

// schemas holds a compiled JSON Schema per registry subject, fetched once each (failures too).
type schemas struct {
	registry, dir string
	client        *http.Client
	cache         map[string]schemaEntry
}

type schemaEntry struct {
	schema *jsonschema.Schema
	err    string
}

func (s *schemas) fetch(subject, etype string) (any, error) {
	if s.dir != "" {
		path := filepath.Join(s.dir, etype+".json")
		if strings.Contains(etype, "/") {
			return nil, fmt.Errorf("no schema file %s", path)
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("no schema file %s", path)
		}
		defer f.Close()
		return jsonschema.UnmarshalJSON(f)
	}
	u := s.registry + "/apis/ccompat/v7/subjects/" + url.PathEscape(subject) + "/versions/latest"
	resp, err := s.client.Get(u)
	if err != nil {
		return nil, fatal{fmt.Sprintf("schema registry %s unreachable: %v", s.registry, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("registry: subject %s: HTTP %d", subject, resp.StatusCode)
	}
	var body struct {
		Schema string `json:"schema"`
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		err = json.Unmarshal(b, &body)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: subject %s: %v", subject, err)
	}
	return jsonschema.UnmarshalJSON(strings.NewReader(body.Schema))
}

func (s *schemas) get(subject, etype string) (schemaEntry, error) {
	if e, ok := s.cache[subject]; ok {
		return e, nil
	}
	var e schemaEntry
	doc, err := s.fetch(subject, etype)
	if err == nil {
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat() // known formats (uuid, date-time, uri...); unknown ones (uint64...) are ignored
		loc := "mem:///" + url.PathEscape(subject) + ".json"
		if m, ok := doc.(map[string]any); ok {
			delete(m, "$id") // each subject compiles on its own, at its own location
		}
		if err = c.AddResource(loc, doc); err == nil {
			e.schema, err = c.Compile(loc)
		}
	}
	if err != nil {
		var f fatal
		if errors.As(err, &f) {
			return e, f
		}
		e.err = fmt.Sprintf("schema %s: %s", subject, firstLine(err.Error()))
	}
	s.cache[subject] = e
	return e, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

type tally struct {
	Records int `json:"records"`
	Parsed  int `json:"parsed"`
	Valid   int `json:"valid"`
}

type counts struct {
	tally
	duplicates int
	topics     []string
	byTopic    map[string]*tally
}

func (c *counts) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"consumer":%q,"records":%d,"parsed":%d,"valid":%d,"duplicates":%d,"by_topic":{`,
		consumerName, c.Records, c.Parsed, c.Valid, c.duplicates)
	for i, t := range c.topics { // in the order given, as the other consumers print it
		name, _ := json.Marshal(t)
		per, _ := json.Marshal(c.byTopic[t])
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%s", name, per)
	}
	b.WriteString("}}")
	return b.String()
}

type checked struct {
	ev            *event.Event
	parsed, valid bool
	reason        string
}

func header(m *kafka.Message, name string) *string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Key, name) {
			v := string(h.Value)
			return &v
		}
	}
	return nil
}

func check(m *kafka.Message, s *schemas) (checked, error) {
	ct := header(m, "content-type")
	if ct == nil || !strings.EqualFold(strings.TrimSpace(strings.SplitN(*ct, ";", 2)[0]), contentType) {
		got := "null"
		if ct != nil {
			got = fmt.Sprintf("%q", *ct)
		}
		return checked{reason: fmt.Sprintf("content-type header is %s, not %s", got, contentType)}, nil
	}
	// The SDK's JSON format: unknown specversion, malformed attributes, data vs data_base64;
	// then Validate: required attributes, URI-reference source, and so on.
	ev := event.New()
	if err := json.Unmarshal(m.Value, &ev); err != nil {
		return checked{reason: "CloudEvents SDK: " + strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")}, nil
	}
	if err := ev.Validate(); err != nil {
		return checked{reason: "CloudEvents SDK: " + strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")}, nil
	}
	c := checked{ev: &ev, parsed: true}
	if m.Key == nil || string(m.Key) != ev.Subject() {
		key := "null"
		if m.Key != nil {
			key = fmt.Sprintf("%q", string(m.Key))
		}
		c.reason = fmt.Sprintf("record key %s != subject %q", key, ev.Subject())
		return c, nil
	}
	subject := *m.TopicPartition.Topic + "-" + ev.Type()
	e, err := s.get(subject, ev.Type())
	if err != nil {
		return c, err
	}
	if e.schema == nil {
		c.reason = e.err
		return c, nil
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Value))
	if err == nil {
		err = e.schema.Validate(inst)
	}
	if err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			leaf := ve
			for len(leaf.Causes) > 0 {
				leaf = leaf.Causes[0]
			}
			c.reason = fmt.Sprintf("schema %s: %s", subject, firstLine(leaf.Error())) // "at '/data/x': ..."
		} else {
			c.reason = fmt.Sprintf("schema %s: %v", subject, err)
		}
		return c, nil
	}
	c.valid = true
	return c, nil
}

type tp struct {
	topic     string
	partition int32
}

func run(a args) (int, error) {
	deadline := time.Now().Add(a.timeout) // with --until-end: from the start
	pw, err := os.ReadFile(a.passwordFile)
	if err != nil {
		return 2, fatal{err.Error()}
	}
	password := strings.TrimRight(string(pw), "\r\n")
	topics := make([]string, len(a.topics))
	for i, t := range a.topics {
		topics[i] = a.topicPrefix + t
	}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":    a.bootstrap,
		"security.protocol":    "SASL_PLAINTEXT",
		"sasl.mechanisms":      a.mechanism,
		"sasl.username":        a.username,
		"sasl.password":        password,
		"group.id":             a.topicPrefix + a.group,
		"client.id":            "chorus-consumer-" + consumerName,
		"isolation.level":      "read_committed",
		"auto.offset.reset":    "earliest",
		"enable.partition.eof": a.untilEnd,
		"enable.auto.commit":   !a.untilEnd, // --until-end reads everything, commits nothing
	})
	if err != nil {
		return 2, fatal{err.Error()}
	}
	defer c.Close()

	// Metadata first: an unknown topic, a refused login or no broker is exit 2.
	var assignment []kafka.TopicPartition
	pending := map[tp]bool{}
	for _, t := range topics {
		t := t
		md, err := c.GetMetadata(&t, false, 20000)
		if err != nil {
			return 2, fatal{fmt.Sprintf("metadata for %s: %v", t, err)}
		}
		tm, ok := md.Topics[t]
		if !ok {
			return 2, fatal{fmt.Sprintf("topic %s: not in metadata", t)}
		}
		if tm.Error.Code() != kafka.ErrNoError {
			return 2, fatal{fmt.Sprintf("topic %s: %v", t, tm.Error)}
		}
		for _, p := range tm.Partitions {
			assignment = append(assignment, kafka.TopicPartition{Topic: &t, Partition: p.ID, Offset: kafka.OffsetBeginning})
			pending[tp{t, p.ID}] = true
		}
	}
	if a.untilEnd {
		// Every partition from the beginning; done when each has reported EOF, which librdkafka
		// raises at the last stable offset under read_committed, past transaction markers.
		err = c.Assign(assignment)
	} else {
		pending = nil
		err = c.SubscribeTopics(topics, nil)
	}
	if err != nil {
		return 2, fatal{err.Error()}
	}

	cnt := &counts{topics: topics, byTopic: map[string]*tally{}}
	for _, t := range topics {
		cnt.byTopic[t] = &tally{}
	}
	s := &schemas{registry: a.registry, dir: a.schemaFileDir, client: &http.Client{Timeout: 15 * time.Second},
		cache: map[string]schemaEntry{}}
	seen := map[string]bool{}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)

	for pending == nil || len(pending) > 0 {
		select {
		case <-sigs:
			pending = map[tp]bool{}
			continue
		default:
		}
		if pending != nil && time.Now().After(deadline) {
			var left []string
			for k := range pending {
				left = append(left, fmt.Sprintf("%s[%d]", k.topic, k.partition))
			}
			sort.Strings(left)
			fmt.Fprintf(os.Stderr, "timeout: the end was not reached within %gs; partitions not at their end: %s\n",
				a.timeout.Seconds(), strings.Join(left, ", "))
			fmt.Println(cnt.summary())
			return 1, nil
		}
		switch e := c.Poll(500).(type) {
		case kafka.PartitionEOF:
			if pending != nil {
				delete(pending, tp{*e.Topic, e.Partition})
			}
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				return 2, fatal{fmt.Sprintf("%s: %v", *e.TopicPartition.Topic, e.TopicPartition.Error)}
			}
			if err := handle(e, s, cnt, seen, a.quiet); err != nil {
				return 2, err
			}
		case kafka.Error:
			switch e.Code() {
			case kafka.ErrAuthentication, kafka.ErrSaslAuthenticationFailed, kafka.ErrTopicAuthorizationFailed,
				kafka.ErrGroupAuthorizationFailed, kafka.ErrUnknownTopicOrPart:
				return 2, fatal{e.Error()}
			}
			if e.IsFatal() {
				return 2, fatal{e.Error()}
			}
			fmt.Fprintf(os.Stderr, "kafka: %v\n", e)
		}
	}
	fmt.Println(cnt.summary())
	if cnt.Records == cnt.Parsed && cnt.Parsed == cnt.Valid {
		return 0, nil
	}
	return 1, nil
}

func handle(m *kafka.Message, s *schemas, cnt *counts, seen map[string]bool, quiet bool) error {
	topic := *m.TopicPartition.Topic
	c, err := check(m, s)
	if err != nil {
		return err
	}
	per := cnt.byTopic[topic]
	cnt.Records++
	per.Records++
	status := "unparsed"
	if c.parsed {
		cnt.Parsed++
		per.Parsed++
		status = "invalid"
	}
	if c.valid {
		cnt.Valid++
		per.Valid++
		status = "ok"
	}
	where := fmt.Sprintf("%s p%d@%d", topic, m.TopicPartition.Partition, m.TopicPartition.Offset)
	line := where + " - subject=- id=- " + status
	if c.ev != nil {
		if seen[c.ev.ID()] {
			cnt.duplicates++
			status += " duplicate"
		}
		seen[c.ev.ID()] = true
		line = fmt.Sprintf("%s %s subject=%s id=%s %s", where, c.ev.Type(), c.ev.Subject(), c.ev.ID(), status)
	}
	if c.reason != "" {
		fmt.Fprintf(os.Stderr, "%s: %s\n", where, c.reason)
	}
	if !quiet {
		fmt.Println(line)
	}
	return nil
}

func main() {
	a := parseArgs(os.Args[1:])
	rc, err := run(a)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chorus-consumer-%s: %v\n", consumerName, err)
	}
	os.Exit(rc)
}
