// Applies infra/kafka/acls under one topic prefix in a single CreateAcls request, with
// Kafka's own Admin client (the kafka-clients jar the broker ships). kafka-acls.sh adds
// one resource pattern per run, and a JVM start per pattern would cost every test tens of
// seconds; this is the same API, batched.
//
//   java -cp "<kafka libs>/*:<dir of this class>" ChorusAcls <bootstrap> <client.properties> <acls file> <prefix>
//
// Prints how many bindings it created. Creating a binding that exists is a no-op.

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public final class ChorusAcls {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: ChorusAcls <bootstrap> <client.properties> <acls file> <prefix>");
            System.exit(2);
        }
        String prefix = args[3];
        List<AclBinding> bindings = new ArrayList<>();
        int lineNumber = 0;
        for (String line : Files.readAllLines(Path.of(args[2]))) {
            lineNumber++;
            String text = line.replaceAll("#.*", "").trim();
            if (text.isEmpty()) {
                continue;
            }
            String[] f = text.split("\\s+");
            if (f.length != 5) {
                throw new IllegalArgumentException(args[2] + ":" + lineNumber + ": expected 5 columns, found " + f.length);
            }
            ResourcePattern resource = new ResourcePattern(
                ResourceType.fromString(f[2]), prefix + f[4], PatternType.fromString(f[3]));
            AclOperation operation = AclOperation.fromString(f[1]);
            if (resource.resourceType() == ResourceType.UNKNOWN || operation == AclOperation.UNKNOWN
                || resource.patternType() == PatternType.UNKNOWN) {
                throw new IllegalArgumentException(args[2] + ":" + lineNumber + ": unknown operation, resource or pattern type");
            }
            bindings.add(new AclBinding(resource,
                new AccessControlEntry("User:" + f[0], "*", operation, AclPermissionType.ALLOW)));
        }
        Properties config = new Properties();
        try (var in = Files.newInputStream(Path.of(args[1]))) {
            config.load(in);
        }
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put(AdminClientConfig.CLIENT_ID_CONFIG, "chorus-acls");
        try (Admin admin = Admin.create(config)) {
            admin.createAcls(bindings).all().get();
        }
        System.out.println("created " + bindings.size() + " ACL bindings under prefix '" + prefix + "'");
    }
}
