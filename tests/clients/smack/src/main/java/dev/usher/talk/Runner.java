package dev.usher.talk;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import java.io.BufferedReader;
import java.io.File;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Consumer;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;
import org.jivesoftware.smack.ConnectionConfiguration.SecurityMode;
import org.jivesoftware.smack.SmackConfiguration;
import org.jivesoftware.smack.XMPPException.XMPPErrorException;
import org.jivesoftware.smack.filter.StanzaIdFilter;
import org.jivesoftware.smack.filter.StanzaTypeFilter;
import org.jivesoftware.smack.iqrequest.IQRequestHandler;
import org.jivesoftware.smack.packet.EmptyResultIQ;
import org.jivesoftware.smack.packet.IQ;
import org.jivesoftware.smack.packet.Message;
import org.jivesoftware.smack.packet.Presence;
import org.jivesoftware.smack.packet.Stanza;
import org.jivesoftware.smack.roster.Roster;
import org.jivesoftware.smack.roster.RosterEntry;
import org.jivesoftware.smack.roster.packet.RosterPacket;
import org.jivesoftware.smack.roster.rosterstore.DirectoryRosterStore;
import org.jivesoftware.smack.tcp.XMPPTCPConnection;
import org.jivesoftware.smack.tcp.XMPPTCPConnectionConfiguration;
import org.jivesoftware.smackx.delay.packet.DelayInformation;
import org.jivesoftware.smackx.disco.ServiceDiscoveryManager;
import org.jivesoftware.smackx.disco.packet.DiscoverInfo;
import org.jivesoftware.smackx.iqregister.AccountManager;
import org.jivesoftware.smackx.ping.PingManager;
import org.jivesoftware.smackx.ping.packet.Ping;
import org.jxmpp.jid.impl.JidCreate;
import org.jxmpp.jid.parts.Localpart;

/**
 * Drives Smack clients for the Python tests. Each stdin line is a command
 * {"id", "client", "op", ...}; each is answered by one stdout line {"id", "ok", ...}
 * or {"id", "error"}. What a client receives comes as {"client", "kind", ...} lines
 * whenever it arrives, so the tests see Smack's view of the wire.
 */
public final class Runner {
    private static final Gson GSON = new GsonBuilder().serializeNulls().create();
    private static final PrintStream OUT =
            new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
    private static final Map<String, Client> CLIENTS = new ConcurrentHashMap<>();
    private static final long TIMEOUT_MS = 20_000;

    public static void main(String[] args) throws Exception {
        // stdout carries the protocol alone; Smack's debugger and anything
        // else printing goes to the log.
        System.setOut(System.err);
        SmackConfiguration.DEBUG = System.getenv("TALK_SMACK_DEBUG") != null;
        SmackConfiguration.setDefaultReplyTimeout((int) TIMEOUT_MS);
        // Commands run concurrently (one client may wait while another acts);
        // the Python side awaits each answer before a client's next command.
        ExecutorService pool = Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r);
            t.setDaemon(true);
            return t;
        });
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            JsonObject cmd = GSON.fromJson(line, JsonObject.class);
            pool.submit(() -> answer(cmd));
        }
        for (Client c : CLIENTS.values()) {
            c.connection.instantShutdown();
        }
        System.exit(0);
    }

    private static void answer(JsonObject cmd) {
        Map<String, Object> reply = new LinkedHashMap<>();
        reply.put("id", cmd.get("id").getAsLong());
        try {
            reply.put("ok", run(cmd));
        } catch (XMPPErrorException e) {
            reply.put("error", "stanza-error");
            reply.put("condition", e.getStanzaError().getCondition().toString());
            reply.put("text", e.getStanzaError().getConditionText());
        } catch (Exception e) {
            e.printStackTrace(); // into the runner's log
            reply.put("error", e.getClass().getSimpleName());
            reply.put("text", String.valueOf(e.getMessage()));
        }
        emit(reply);
    }

    static synchronized void emit(Map<String, Object> line) {
        OUT.println(GSON.toJson(line));
    }

    private static Object run(JsonObject cmd) throws Exception {
        String name = cmd.get("client").getAsString();
        String op = cmd.get("op").getAsString();
        if (op.equals("open")) {
            Client c = new Client(name, cmd);
            CLIENTS.put(name, c);
            return Map.of();
        }
        Client c = CLIENTS.get(name);
        if (c == null) {
            throw new IllegalStateException("no client " + name);
        }
        switch (op) {
            case "preauth": return c.preauth(cmd.get("token").getAsString());
            case "register": return c.register(cmd.get("user").getAsString(), cmd.get("password").getAsString());
            case "login": return c.login(cmd.get("user").getAsString(), cmd.get("password").getAsString());
            case "send_message": return c.sendMessage(cmd.get("to").getAsString(), cmd.get("body").getAsString());
            case "ping": return c.ping(cmd.get("to").getAsString());
            case "disco_info": return c.discoInfo(cmd.get("to").getAsString());
            case "roster": return c.roster();
            case "roster_add": return c.rosterAdd(cmd.get("jid").getAsString(), cmd.get("name").getAsString());
            case "close": c.connection.disconnect(); CLIENTS.remove(name); return Map.of();
            case "drop": c.connection.instantShutdown(); CLIENTS.remove(name); return Map.of();
            default: throw new IllegalArgumentException("unknown op " + op);
        }
    }

    /** One Smack connection, set up as an app would: TLS required, server certificate pinned. */
    static final class Client {
        final String name;
        final XMPPTCPConnection connection;
        final Roster roster;
        final DirectoryRosterStore store;
        final Set<String> rosterGets = ConcurrentHashMap.newKeySet();

        Client(String name, JsonObject cmd) throws Exception {
            this.name = name;
            XMPPTCPConnectionConfiguration config = XMPPTCPConnectionConfiguration.builder()
                    .setXmppDomain(cmd.get("domain").getAsString())
                    .setHostAddress(InetAddress.getByName(cmd.get("host").getAsString()))
                    .setPort(cmd.get("port").getAsInt())
                    .setSecurityMode(SecurityMode.required)
                    .setCustomX509TrustManager(pinned(cmd.get("ca").getAsString()))
                    .setCompressionEnabled(false)
                    .build();
            connection = new XMPPTCPConnection(config);
            roster = Roster.getInstanceFor(connection);
            // A profile directory is the app's roster cache: with it Smack uses
            // roster versioning (RFC 6121 §2.6) across logins.
            if (cmd.has("profile")) {
                File dir = new File(cmd.get("profile").getAsString());
                DirectoryRosterStore existing = dir.isDirectory() ? DirectoryRosterStore.open(dir) : null;
                if (existing == null) {
                    dir.mkdirs();
                    existing = DirectoryRosterStore.init(dir);
                }
                store = existing;
                roster.setRosterStore(store);
            } else {
                store = null;
            }
            PingManager.getInstanceFor(connection);
            listen();
            connection.connect();
        }

        @SuppressWarnings("deprecation") // addStanzaInterceptor: the only synchronous hook for IQs
        private void listen() {
            connection.addSyncStanzaListener(s -> event(describePresence((Presence) s)), new StanzaTypeFilter(Presence.class));
            connection.addSyncStanzaListener(s -> event(describeMessage((Message) s)), new StanzaTypeFilter(Message.class));
            observe(Ping.ELEMENT, Ping.NAMESPACE, IQ.Type.get,
                    iq -> event(Map.of("kind", "ping", "from", String.valueOf(iq.getFrom()))));
            observe(RosterPacket.ELEMENT, RosterPacket.NAMESPACE, IQ.Type.set,
                    iq -> event(describeRoster("roster_push", (RosterPacket) iq)));
            connection.addSyncStanzaListener(s -> {
                IQ iq = (IQ) s;
                if (iq.getType() == IQ.Type.result && rosterGets.remove(iq.getStanzaId())) {
                    if (iq instanceof RosterPacket) {
                        event(describeRoster("roster_result", (RosterPacket) iq));
                    } else if (iq instanceof EmptyResultIQ) {
                        event(Map.of("kind", "roster_result", "query", false));
                    }
                }
            }, new StanzaTypeFilter(IQ.class));
            // What Smack asks for at login: the `ver` it sends is from its store.
            // An interceptor, as sending listeners run later on another thread
            // and the answer could beat them.
            connection.addStanzaInterceptor(s -> {
                RosterPacket get = (RosterPacket) s;
                if (get.getType() == IQ.Type.get) {
                    rosterGets.add(get.getStanzaId());
                    Map<String, Object> e = new LinkedHashMap<>();
                    e.put("kind", "roster_get");
                    e.put("ver", get.getVersion());
                    event(e);
                }
            }, new StanzaTypeFilter(RosterPacket.class));
        }

        /**
         * Smack gives an IQ request to the one handler registered for it (here
         * PingManager's, Roster's) and to no stanza listener; to see it, stand
         * in front of that handler and pass everything on.
         */
        private void observe(String element, String namespace, IQ.Type type, Consumer<IQ> record) {
            IQRequestHandler smacks = connection.unregisterIQRequestHandler(element, namespace, type);
            if (smacks == null) {
                throw new IllegalStateException("Smack has no handler for " + element + " " + namespace);
            }
            connection.registerIQRequestHandler(new IQRequestHandler() {
                @Override
                public IQ handleIQRequest(IQ iq) {
                    record.accept(iq);
                    return smacks.handleIQRequest(iq);
                }

                @Override
                public Mode getMode() {
                    return smacks.getMode();
                }

                @Override
                public IQ.Type getType() {
                    return type;
                }

                @Override
                public String getElement() {
                    return element;
                }

                @Override
                public String getNamespace() {
                    return namespace;
                }
            });
        }

        void event(Map<String, Object> body) {
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("client", name);
            line.putAll(body);
            emit(line);
        }

        Object preauth(String token) throws Exception {
            Preauth iq = new Preauth(token);
            iq.setTo(connection.getXMPPServiceDomain());
            // Smack's usual IQ reply matching needs the user's JID, unknown
            // before login; AccountManager collects its answers by id, so here too.
            connection.createStanzaCollectorAndSend(new StanzaIdFilter(iq.getStanzaId()), iq).nextResultOrThrow();
            return Map.of();
        }

        Object register(String user, String password) throws Exception {
            AccountManager.getInstance(connection).createAccount(Localpart.from(user), password);
            return Map.of();
        }

        Object login(String user, String password) throws Exception {
            connection.login(user, password);
            return Map.of("jid", connection.getUser().toString(),
                    "rosterver", connection.hasFeature("ver", "urn:xmpp:features:rosterver"));
        }

        Object sendMessage(String to, String body) throws Exception {
            Message m = connection.getStanzaFactory().buildMessageStanza()
                    .to(JidCreate.from(to)).ofType(Message.Type.chat).setBody(body).build();
            connection.sendStanza(m);
            return Map.of();
        }

        Object ping(String to) throws Exception {
            IQ pong = connection.sendIqRequestAndWaitForResponse(new Ping(JidCreate.from(to)));
            return Map.of("from", String.valueOf(pong.getFrom()));
        }

        Object discoInfo(String to) throws Exception {
            DiscoverInfo info = ServiceDiscoveryManager.getInstanceFor(connection).discoverInfo(JidCreate.from(to));
            List<Map<String, String>> identities = new ArrayList<>();
            for (DiscoverInfo.Identity i : info.getIdentities()) {
                identities.add(Map.of("category", i.getCategory(), "type", i.getType()));
            }
            List<String> features = new ArrayList<>();
            for (DiscoverInfo.Feature f : info.getFeatures()) {
                features.add(f.getVar());
            }
            return Map.of("identities", identities, "features", features);
        }

        /** The roster as Smack holds it once loaded, and the version in its store. */
        Object roster() throws Exception {
            long deadline = System.currentTimeMillis() + TIMEOUT_MS;
            while (!roster.isLoaded()) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("roster not loaded");
                }
                Thread.sleep(20);
            }
            Map<String, String> items = new LinkedHashMap<>();
            for (RosterEntry e : roster.getEntries()) {
                items.put(e.getJid().toString(), e.getType().toString());
            }
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("items", items);
            out.put("ver", store == null ? null : store.getRosterVersion());
            return out;
        }

        Object rosterAdd(String jid, String name) throws Exception {
            roster.createItem(JidCreate.bareFrom(jid), name, null);
            return Map.of();
        }
    }

    static Map<String, Object> describePresence(Presence p) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("kind", "presence");
        e.put("from", String.valueOf(p.getFrom()));
        e.put("type", p.getType().toString());
        return e;
    }

    static Map<String, Object> describeMessage(Message m) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("kind", "message");
        e.put("from", String.valueOf(m.getFrom()));
        e.put("type", m.getType().toString());
        e.put("body", m.getBody());
        e.put("delayed", DelayInformation.from(m) != null);
        if (m.getType() == Message.Type.error && m.getError() != null) {
            e.put("condition", m.getError().getCondition().toString());
        }
        return e;
    }

    static Map<String, Object> describeRoster(String kind, RosterPacket r) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("kind", kind);
        e.put("query", true);
        e.put("ver", r.getVersion());
        Map<String, String> items = new LinkedHashMap<>();
        for (RosterPacket.Item i : r.getRosterItems()) {
            items.put(i.getJid().toString(), i.getItemType().toString());
        }
        e.put("items", items);
        return e;
    }

    /** Trusts exactly the certificates in a PEM file: the node's own, or a test CA. */
    static X509TrustManager pinned(String pemPath) throws Exception {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (InputStream in = new FileInputStream(pemPath)) {
            int n = 0;
            for (Certificate cert : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                ks.setCertificateEntry("pinned" + n++, cert);
            }
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        return (X509TrustManager) tmf.getTrustManagers()[0];
    }

    /** XEP-0445 preauth: Smack has no class for it. */
    static final class Preauth extends IQ {
        private final String token;

        Preauth(String token) {
            super("preauth", "urn:xmpp:pars:0");
            this.token = token;
            setType(IQ.Type.set);
        }

        @Override
        protected IQChildElementXmlStringBuilder getIQChildElementBuilder(IQChildElementXmlStringBuilder xml) {
            xml.attribute("token", token);
            xml.setEmptyElement();
            return xml;
        }
    }
}
