using System.CommandLine;
using System.CommandLine.Help;
using VirtioSharp.Cli.Doctor;
using VirtioSharp.Dma;
using VirtioSharp.Platform;
using VirtioSharp.Spec;

namespace VirtioSharp.Cli;

/// <summary>The virtio-sharp command line. Kept callable in-process so tests can run it.</summary>
public static class CliApp
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("VirtioSharp: virtio with every device memory access through a DMA API");

        var demo = new Command("demo", "Run every device, DMA mode and 2018 scenario on the simulated platform with verified I/O");
        var chains = new Option<int>("--chains") { Description = "Chains per mode in the ring round trip", DefaultValueFactory = _ => 512 };
        demo.Options.Add(chains);
        demo.SetAction(r => Demo(r.GetValue(chains), stdout, stderr));
        root.Subcommands.Add(demo);

        var scenarios = new Command("scenarios", "Replay the 2018 DMA API thread's failures and fixes, one table row each");
        var name = new Argument<string?>("name") { Description = "Run one scenario and show its evidence", Arity = ArgumentArity.ZeroOrOne };
        var verbose = new Option<bool>("--verbose", "-v") { Description = "Show the event trace (features, decisions, queue setup, transport events)" };
        scenarios.Arguments.Add(name);
        scenarios.Options.Add(verbose);
        scenarios.SetAction(r => RunScenarios(r.GetValue(name), r.GetValue(verbose), stdout, stderr));
        root.Subcommands.Add(scenarios);

        var explain = new Command("explain", "Print the DMA policy's decision for a device and every reason");
        var transport = new Option<string>("--transport") { Description = "mmio | mmio-legacy | pci | pci-legacy | vhost-user", DefaultValueFactory = _ => "pci" };
        transport.AcceptOnlyFromAmong("mmio", "mmio-legacy", "pci", "pci-legacy", "vhost-user");
        var iommu = new Option<bool>("--iommu") { Description = "The device sits behind an IOMMU" };
        var bypass = new Option<bool>("--bypass") { Description = "The IOMMU passes the device through" };
        var restricted = new Option<bool>("--restricted") { Description = "Protected guest: the host may only read shared pages" };
        var nonCoherent = new Option<bool>("--non-coherent") { Description = "Firmware says the device does not snoop caches" };
        var quirk = new Option<bool>("--legacy-iommu-quirk") { Description = "The device is known to sit behind an IOMMU without ACCESS_PLATFORM" };
        var features = new Option<string?>("--features") { Description = "Offered features, e.g. VERSION_1,ACCESS_PLATFORM (default: VERSION_1 on modern transports)" };
        var mode = new Option<PolicyMode>("--policy") { Description = "LinuxToday | Rfc2018 | PreRfc", DefaultValueFactory = _ => PolicyMode.LinuxToday };
        var connect = new Option<string?>("--connect") { Description = "Explain a real connection: connect to the vhost-user back-end at this socket and use what it offers" };
        var device = new Option<string>("--device") { Description = "With --connect: blk | rng | net", DefaultValueFactory = _ => "blk" };
        device.AcceptOnlyFromAmong("blk", "rng", "net");
        var bounceOnly = new Option<bool>("--bounce-only") { Description = "With --connect: share only a window of rings and a bounce pool (a protected guest)" };
        var frontendIommu = new Option<InvalidationMode?>("--frontend-iommu") { Description = "With --connect: the front-end is the device's IOMMU (Strict | Lazy)" };
        foreach (var o in new Option[] { transport, iommu, bypass, restricted, nonCoherent, quirk, features, mode, connect, device, bounceOnly, frontendIommu }) explain.Options.Add(o);
        explain.SetAction(r =>
        {
            if (r.GetValue(connect) is { } sock)
                return ExplainConnection.Run(sock, r.GetValue(device) switch { "rng" => DeviceId.Entropy, "net" => DeviceId.Network, _ => DeviceId.Block },
                    r.GetValue(bounceOnly) ? 2UL << 20 : 0, r.GetValue(frontendIommu), stdout, stderr);
            var t = ParseTransport(r.GetValue(transport)!);
            ulong offered = DmaPolicy.IsLegacyTransport(t) ? 0 : VirtioFeature.Bit(VirtioFeature.Version1);
            if (r.GetValue(features) is { } text && !VirtioFeature.TryParse(text, out offered, out var err))
            {
                stderr.WriteLine("error: " + err);
                return 2;
            }
            var facts = new PlatformFacts
            {
                BehindIommu = r.GetValue(iommu) || r.GetValue(bypass),
                IommuBypass = r.GetValue(bypass),
                RestrictedMemory = r.GetValue(restricted),
                Coherent = !r.GetValue(nonCoherent),
                LegacyIommuQuirk = r.GetValue(quirk),
            };
            var d = DmaPolicy.Decide(facts, t, offered, 0, r.GetValue(mode));
            stdout.WriteLine($"decision: {d.Summary}");
            stdout.WriteLine($"features: {VirtioFeature.Describe(d.Features)}");
            foreach (var reason in d.Reasons) stdout.WriteLine("  - " + reason);
            return d.Refused ? 1 : 0;
        });
        root.Subcommands.Add(explain);

        var devices = DeviceSpecs();
        foreach (var spec in devices)
            root.Subcommands.Add(Daemon.VhostUserDaemon.Create(spec, stdout, stderr));
        root.Subcommands.Add(InstallDescriptorsCommand.Create(devices, stdout, stderr));
        root.Subcommands.Add(DoctorCommand.Create(stdout));

        var examples = new Dictionary<Command, string[]>
        {
            [root] = ["virtio-sharp doctor", "virtio-sharp demo", "virtio-sharp vhost-user-blk --socket-path /tmp/vs-blk.sock --blk-file disk.img"],
            [demo] = ["virtio-sharp demo", "virtio-sharp demo --chains 64"],
            [scenarios] = ["virtio-sharp scenarios", "virtio-sharp scenarios legacy-mmio-iommu-no-dma-api -v"],
            [explain] = ["virtio-sharp explain --transport mmio-legacy --iommu", "virtio-sharp explain --transport pci --restricted --features VERSION_1",
                "virtio-sharp explain --connect /tmp/vs-blk.sock --bounce-only"],
        };
        foreach (var c in root.Subcommands)
            if (!examples.ContainsKey(c)) examples[c] = Examples(c.Name);
        foreach (var h in root.Options.OfType<HelpOption>())
            if (h.Action is HelpAction inner) h.Action = new ExampleHelpAction(inner, examples);

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) stderr.WriteLine("error: " + e.Message);
            return 2;
        }
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
    }

    /// <summary>Examples for the commands defined in their own files.</summary>
    private static string[] Examples(string command) => command switch
    {
        "vhost-user-blk" =>
        [
            "virtio-sharp vhost-user-blk --socket-path /tmp/vs-blk.sock --blk-file disk.img --num-queues 4",
            "virtio-sharp vhost-user-blk --fd 3 --blk-file /var/lib/virtio-sharp/vm1.img --cache none   # socket activation",
            "virtio-sharp vhost-user-blk --print-capabilities",
        ],
        "vhost-user-rng" => ["virtio-sharp vhost-user-rng --socket-path /tmp/vs-rng.sock --max-bytes-per-second 1048576"],
        "vhost-user-net" =>
        [
            "virtio-sharp vhost-user-net --socket-path /tmp/vs-net.sock --tap vstap0",
            "virtio-sharp vhost-user-net --socket-path /tmp/vs-net.sock --tap vstap0 --queue-pairs 2 --multi-queue-tap --mtu 9000",
            "virtio-sharp vhost-user-net --switch sw0 --socket-path /tmp/vs-a.sock --socket-path /tmp/vs-b.sock   # two guests, one L2 switch",
        ],
        "install-descriptors" => ["sudo virtio-sharp install-descriptors", "virtio-sharp install-descriptors --dest-dir ./staging --descriptor-dir /usr/share/qemu/vhost-user"],
        "doctor" => ["virtio-sharp doctor", "virtio-sharp doctor --qemu /opt/qemu/bin/qemu-system-x86_64"],
        _ => [],   // CliHelpTests fails for a command without examples
    };

    /// <summary>The vhost-user device commands, in --help order.</summary>
    internal static IReadOnlyList<Daemon.DeviceCommandSpec> DeviceSpecs() => [VhostUserBlkCommand.Spec(), VhostUserRngCommand.Spec(), VhostUserNetCommand.Spec()];

    private static TransportKind ParseTransport(string s) => s switch
    {
        "mmio" => TransportKind.Mmio,
        "mmio-legacy" => TransportKind.MmioLegacy,
        "pci-legacy" => TransportKind.PciLegacy,
        "vhost-user" => TransportKind.VhostUser,
        _ => TransportKind.Pci,
    };

    private static int Demo(int chains, TextWriter stdout, TextWriter stderr)
    {
        if (chains <= 0) { stderr.WriteLine("error: --chains must be positive"); return 2; }
        stdout.WriteLine("== devices: probe, verified I/O, remove (leak-checked) ==");
        List<DeviceRun> devices;
        using (var progress = ProgressLine.For(stderr, "devices", 0))
            devices = progress.Each(DeviceMatrix.RunAll(), d => $"{d.Transport} {d.Mode} {d.Device}").ToList();
        var dt = new TextTable("transport", "dma mode", "device", "ops", "result", "detail");
        foreach (var d in devices) dt.Add(d.Transport, d.Mode, d.Device, d.Ops, d.Ok ? "ok" : "FAILED", d.Detail);
        dt.Write(stdout);

        stdout.WriteLine();
        stdout.WriteLine("== split ring round trip per DMA mode ==");
        var modes = RoundTrip.DmaModes().ToList();
        List<RoundTripResult> rows;
        using (var progress = ProgressLine.For(stderr, "round trip", modes.Count))
            rows = progress.Each(modes, m => m.Name).Select(s => RoundTrip.Run(s with { Chains = chains })).ToList();
        var table = new TextTable("mode", "decision", "ops", "chains", "verified", "iommu faults", "bounce bytes", "outcome");
        foreach (var r in rows)
            table.Add(r.Name, r.Decision.Summary, r.Ops, $"{r.Completed}/{r.Attempted}", r.Verified.ToString(), r.IommuFaults.ToString(), r.BounceBytes.ToString(), r.Outcome);
        table.Write(stdout);

        stdout.WriteLine();
        stdout.WriteLine("== the 2018 thread's scenarios ==");
        var results = RunWithProgress(Scenarios.All.ToList(), stderr);
        ScenarioTable(results, stdout);

        int bad = devices.Count(d => !d.Ok) + rows.Count(r => !r.Clean) + results.Count(r => !r.AsExpected);
        stdout.WriteLine();
        stdout.WriteLine(bad == 0
            ? $"all {devices.Count} device runs and {rows.Count} DMA modes moved verified data; all {results.Count} scenarios ended as expected"
            : $"{bad} checks did not end as expected");
        return bad == 0 ? 0 : 1;
    }

    private static List<ScenarioResult> RunWithProgress(List<Scenario> list, TextWriter stderr)
    {
        using var progress = ProgressLine.For(stderr, "scenarios", list.Count);
        return progress.Each(list, s => s.Name).Select(Scenarios.Run).ToList();
    }

    private static void ScenarioTable(IEnumerable<ScenarioResult> results, TextWriter stdout)
    {
        var t = new TextTable("scenario", "platform", "transport", "policy decision", "outcome", "evidence");
        foreach (var r in results)
            t.Add(r.Name, r.Platform, r.Transport, r.Decision, r.Outcome + (r.AsExpected ? "" : $" (expected {r.Expected})"), r.Evidence.FirstOrDefault() ?? "");
        t.Write(stdout);
    }

    private static int RunScenarios(string? name, bool verbose, TextWriter stdout, TextWriter stderr)
    {
        List<Scenario> list;
        if (name is null) list = Scenarios.All.ToList();
        else if (Scenarios.All.FirstOrDefault(s => s.Name == name) is { } one) list = [one];
        else
        {
            stderr.WriteLine($"error: no scenario named '{name}'; known: {string.Join(", ", Scenarios.All.Select(s => s.Name))}");
            return 2;
        }
        var results = RunWithProgress(list, stderr);
        if (name is null && !verbose) ScenarioTable(results, stdout);
        else
            foreach (var (s, r) in list.Zip(results))
            {
                stdout.WriteLine($"{r.Name}: {s.Description}");
                stdout.WriteLine($"  platform: {r.Platform}; transport: {r.Transport}; decision: {r.Decision}");
                stdout.WriteLine($"  outcome: {r.Outcome} (expected {r.Expected})");
                foreach (var e in r.Evidence) stdout.WriteLine("  evidence: " + e);
                if (verbose) foreach (var line in r.Trace) stdout.WriteLine("  trace: " + line);
                stdout.WriteLine();
            }
        return results.All(r => r.AsExpected) ? 0 : 1;
    }
}
