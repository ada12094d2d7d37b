using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.VhostUser.Diagnostics;

namespace VirtioSharp.Cli.Daemon;

/// <summary>
/// The vhost-user back-end program every `vhost-user-&lt;device&gt;` command shares (vhost-user.rst "Backend program
/// conventions"): --socket-path or --fd, --print-capabilities, SIGTERM/SIGINT, logging, a periodic stats line and a
/// final one to which the device contributes its counters.
/// </summary>
internal static class VhostUserDaemon
{
    public static Command Create(DeviceCommandSpec spec, TextWriter stdout, TextWriter stderr)
    {
        var cmd = new Command(spec.Name, spec.Description);
        // Repeatable only where the command serves one device per socket.
        Option socketPath = spec.MultiSocket
            ? new Option<string[]>("--socket-path")
            {
                Description = "Unix socket to listen on (incompatible with --fd); repeat it for one device per socket",
                Arity = ArgumentArity.ZeroOrMore,
                AllowMultipleArgumentsPerToken = false,
            }
            : new Option<string?>("--socket-path") { Description = "Unix socket to listen on (incompatible with --fd)" };
        var fd = new Option<int?>("--fd") { Description = "A vhost-user socket inherited as this descriptor: connected (served once) or listening (socket activation; accepts like --socket-path)" };
        var caps = new Option<bool>("--print-capabilities") { Description = "Print the back-end's capabilities as JSON and exit" };
        var stats = new Option<int>("--stats-interval") { Description = "Seconds between stats lines (0: none)", DefaultValueFactory = _ => 0 };
        var level = new Option<LogLevel>("--log-level") { Description = "Trace | Debug | Information | Warning | Error", DefaultValueFactory = _ => LogLevel.Information };
        var unsealed = new Option<bool>("--allow-unsealed-memory")
        {
            Description = "Accept guest memory the front-end could shrink (memfds without F_SEAL_SHRINK, tmpfs/hugetlbfs files, " +
                "e.g. QEMU's memory-backend-file): a front-end that truncates such a file crashes this back-end (SIGBUS). " +
                "Without it only sealed memory (QEMU's memory-backend-memfd, seal=on by default) is served",
        };
        var pollUs = new Option<int>("--poll-us")
        {
            Description = "Busy-poll a ring for up to N microseconds after it had work before sleeping on its kick eventfd " +
                "(lower latency at low queue depth for up to N µs of CPU per idle period; 0: off, the default; at most 1000000)",
            DefaultValueFactory = _ => 0,
        };
        var injectNoDirtyLog = new Option<bool>("--inject-no-dirty-log")
        {
            Description = "FAULT INJECTION (tests only): offer VHOST_F_LOG_ALL but log no dirty page, so a live migration " +
                "silently loses what the back-end writes while it runs. Shows that the migration test can fail; never use it in service",
        };
        foreach (var o in new Option[] { socketPath, fd }.Concat(spec.Options).Concat([caps, stats, level, unsealed, pollUs, injectNoDirtyLog])) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            if (r.GetValue(caps))
            {
                stdout.Write(CapabilitiesJson(spec));
                return 0;
            }
            string[] paths = socketPath is Option<string[]> many ? r.GetValue(many) ?? []
                : r.GetValue((Option<string?>)socketPath) is { } one ? [one] : [];
            int? inherited = r.GetValue(fd);
            if ((paths.Length == 0) == (inherited is null)) return Error(stderr, "give exactly one of --socket-path PATH or --fd N");
            if (paths.Distinct().Count() != paths.Length) return Error(stderr, "--socket-path: each socket path may be given once");
            if (r.GetValue(stats) < 0) return Error(stderr, "--stats-interval must be 0 or more seconds");
            if (r.GetValue(pollUs) is < 0 or > 1_000_000) return Error(stderr, "--poll-us must be 0..1000000 microseconds");
            var (device, error) = spec.Build(r, Math.Max(1, paths.Length));
            if (device is null) return Error(stderr, error ?? "the device could not be set up");
            if ((device.Devices?.Count ?? 1) != Math.Max(1, paths.Length))
            {
                device.Resource?.Dispose();
                return Error(stderr, $"{paths.Length} --socket-path given: {spec.Name} serves one device per socket");
            }
            using var _ = device.Resource;
            var options = new VhostUserBackendOptions
            {
                AllowUnsealedMemory = r.GetValue(unsealed),
                PollTime = TimeSpan.FromTicks(r.GetValue(pollUs) * TimeSpan.TicksPerMicrosecond),
                InjectNoDirtyLog = r.GetValue(injectNoDirtyLog),
            };
            return Serve(spec, device, paths, inherited, options, r.GetValue(stats), r.GetValue(level), stderr);
        });
        return cmd;
    }

    /// <summary>
    /// The --print-capabilities JSON: {"type": …, "features": [ … ]}: the device's own, and "migration" for every
    /// device (VHOST_F_LOG_ALL: the transport logs whatever a device writes, so QEMU can live-migrate its guest).
    /// </summary>
    public static string CapabilitiesJson(DeviceCommandSpec spec)
    {
        var features = spec.CapabilityFeatures.Append("migration").ToList();
        var sb = new StringBuilder();
        sb.Append("{\n  \"type\": \"").Append(spec.CapabilityType).Append("\",\n  \"features\": [");
        for (int i = 0; i < features.Count; i++)
            sb.Append(i == 0 ? "\n" : ",\n").Append("    \"").Append(features[i]).Append('"');
        sb.Append("\n  ]\n}\n");
        return sb.ToString();
    }

    private static int Error(TextWriter stderr, string message)
    {
        stderr.WriteLine("error: " + message);
        return 2;
    }

    /// <summary>How long SIGTERM/SIGINT waits for the connection to wind down before the process exits anyway.</summary>
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(5);

    private static int Serve(DeviceCommandSpec spec, DaemonDevice device, string[] paths, int? fd, VhostUserBackendOptions options, int statsInterval, LogLevel level, TextWriter stderr)
    {
        using var factory = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; }).SetMinimumLevel(level));
        var log = factory.CreateLogger(spec.Name);
        device.UseLog?.Invoke(log);
        var devices = device.Devices ?? [device.Device];
        var servers = new List<VhostUserServer>();
        try
        {
            if (fd is { } inherited)
            {
                try { servers.Add(new VhostUserServer(inherited, device.Device, log, options)); }
                catch (Exception e) when (e is ArgumentException or IOException)
                {
                    return Error(stderr, $"--fd: {e.Message}; start virtio-sharp with a connected or listening Unix stream socket " +
                        "inherited as that descriptor (or use --socket-path PATH)");
                }
            }
            else
            {
                for (int i = 0; i < paths.Length; i++)
                {
                    // With several sockets each has its own log category, so a line says which guest it is about.
                    var portLog = paths.Length == 1 ? log : factory.CreateLogger($"{spec.Name}[{i}]");
                    try { servers.Add(new VhostUserServer(paths[i], devices[i], portLog, options)); }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Net.Sockets.SocketException)
                    {
                        return Error(stderr, $"--socket-path {paths[i]}: {e.Message}");
                    }
                }
            }
            return Serve(spec, device, servers, paths, fd, options, statsInterval, factory, log);
        }
        finally
        {
            foreach (var s in servers) s.Dispose();
        }
    }

    private static int Serve(DeviceCommandSpec spec, DaemonDevice device, List<VhostUserServer> servers, string[] paths, int? fd,
        VhostUserBackendOptions options, int statsInterval, ILoggerFactory factory, ILogger log)
    {
        if (options.InjectNoDirtyLog)
            log.LogWarning("fault injection: VHOST_F_LOG_ALL is offered but no dirty page will be logged (--inject-no-dirty-log; a test option): a live migration loses this back-end's writes");
        using var deviceMetrics = device.Metrics;
        // dotnet-counters: VirtioSharp.VhostUser (one meter per socket, tagged with its path when there are several) and
        // the device's meter
        var metrics = servers.Select((s, i) => VhostUserMetrics.Create(s, socket: servers.Count > 1 ? paths[i] : null)).ToList();
        bool returned = false;
        void Stop(PosixSignalContext c)
        {
            c.Cancel = true;
            foreach (var s in servers) s.Stop();
            // A connection wedged by its front-end must not keep the process alive: exit after a grace period.
            _ = Task.Delay(StopGrace).ContinueWith(_ =>
            {
                if (Volatile.Read(ref returned)) return;
                log.LogError("the connection did not end within {Seconds} s of {Signal}; exiting anyway", StopGrace.TotalSeconds, c.Signal);
                log.LogInformation("final stats: {Stats}", Line(Counters(device, servers)));
                factory.Dispose();   // flushes the console logger
                Environment.Exit(1);
            }, TaskScheduler.Default);
        }
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sighup = device.OnHangup is { } hangup ? PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => { c.Cancel = true; hangup(); }) : null;
        string where = fd is not null ? $"fd {fd} ({(servers[0].Listening ? "listening" : "connected")})" : string.Join(", ", paths);
        log.LogInformation("serving {Device} on {Where}", device.Description, where);
        using var timer = statsInterval > 0 ? StartStats(device, servers, log, statsInterval) : null;
        // One thread per socket (each serves its front-end's messages); all return when stopped.
        var threads = servers.Skip(1).Select((s, i) => new Thread(s.Run) { IsBackground = true, Name = $"vhost-user socket {i + 1}" }).ToList();
        foreach (var t in threads) t.Start();
        servers[0].Run();
        foreach (var s in servers) s.Stop();
        foreach (var t in threads) t.Join();
        Volatile.Write(ref returned, true);
        // One summary line on exit: scripts and tests read these counters by key.
        log.LogInformation("final stats: {Stats}", Line(Counters(device, servers)));
        foreach (var m in metrics) m.Dispose();
        log.LogInformation("stopped");
        return 0;
    }

    private static IEnumerable<(string Key, long Value)> Counters(DaemonDevice device, List<VhostUserServer> servers)
    {
        var c = servers.Select(VhostCounters.Read).Aggregate(Sum);
        return new (string, long)[] { ("connections", c.Connections) }
            .Concat(device.Counters())
            .Concat([
                ("iotlb-hits", c.IotlbHits), ("iotlb-misses", c.IotlbMisses),
                ("iotlb-updates", c.IotlbUpdates), ("iotlb-invalidations", c.IotlbInvalidations),
                ("dirty-pages", c.DirtyPages), ("dirty-log-overflow", c.DirtyLogOutOfRange),
                ("resubmitted", c.Resubmitted), ("kicks", c.Kicks), ("polled", c.Polled),
                ("interrupts", c.Interrupts), ("interrupts-suppressed", c.InterruptsSuppressed), ("config-changes", c.ConfigChanges),
                ("protocol-errors", c.ProtocolErrors), ("handler-faults", c.HandlerFaults),
            ]);
    }

    private static VhostCounters Sum(VhostCounters a, VhostCounters b) => new(
        a.Connections + b.Connections, a.ConnectionsEnded + b.ConnectionsEnded, a.Messages + b.Messages,
        a.ProtocolErrors + b.ProtocolErrors, a.HandlerFaults + b.HandlerFaults, a.Kicks + b.Kicks, a.Polled + b.Polled,
        a.Interrupts + b.Interrupts, a.IotlbHits + b.IotlbHits, a.IotlbMisses + b.IotlbMisses, a.IotlbUpdates + b.IotlbUpdates,
        a.IotlbInvalidations + b.IotlbInvalidations, a.Resubmitted + b.Resubmitted, a.ConfigChanges + b.ConfigChanges,
        a.DirtyPages + b.DirtyPages, a.DirtyLogOutOfRange + b.DirtyLogOutOfRange, a.InterruptsSuppressed + b.InterruptsSuppressed);

    private static string Line(IEnumerable<(string Key, long Value)> counters) => string.Join(' ', counters.Select(c => $"{c.Key} {c.Value}"));

    private static Timer StartStats(DaemonDevice device, List<VhostUserServer> servers, ILogger log, int seconds)
    {
        var last = new Dictionary<string, long>();
        return new Timer(_ =>
        {
            var parts = new List<string>();
            foreach (var (k, v) in Counters(device, servers))
            {
                last.TryGetValue(k, out long before);
                parts.Add(v == before ? $"{k} {v}" : $"{k} {v} (+{(v - before) / (double)seconds:F0}/s)");
                last[k] = v;
            }
            log.LogInformation("stats: {Stats}", string.Join(' ', parts));
        }, null, seconds * 1000, seconds * 1000);
    }
}
