using System.CommandLine;
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

        var demo = new Command("demo", "Probe blk, rng and console on mmio and pci in every DMA mode with verified I/O, run the ring round trip per DMA mode, then the 2018 scenarios");
        var chains = new Option<int>("--chains") { Description = "Chains per mode in the ring round trip", DefaultValueFactory = _ => 512 };
        demo.Options.Add(chains);
        demo.SetAction(r => Demo(r.GetValue(chains), stdout, stderr));
        root.Subcommands.Add(demo);

        var scenarios = new Command("scenarios", "The 2018 thread's failures and fixes, run on the simulated platform");
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
        foreach (var o in new Option[] { transport, iommu, bypass, restricted, nonCoherent, quirk, features, mode }) explain.Options.Add(o);
        explain.SetAction(r =>
        {
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

        foreach (var spec in new[] { VhostUserBlkCommand.Spec(), VhostUserRngCommand.Spec(), VhostUserNetCommand.Spec() })
            root.Subcommands.Add(Daemon.VhostUserDaemon.Create(spec, stdout, stderr));

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) stderr.WriteLine("error: " + e.Message);
            return 2;
        }
        return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr });
    }

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
        var devices = DeviceMatrix.RunAll().ToList();
        var dt = new TextTable("transport", "dma mode", "device", "ops", "result", "detail");
        foreach (var d in devices) dt.Add(d.Transport, d.Mode, d.Device, d.Ops, d.Ok ? "ok" : "FAILED", d.Detail);
        dt.Write(stdout);

        stdout.WriteLine();
        stdout.WriteLine("== split ring round trip per DMA mode ==");
        var rows = RoundTrip.DmaModes().Select(s => RoundTrip.Run(s with { Chains = chains })).ToList();
        var table = new TextTable("mode", "decision", "ops", "chains", "verified", "iommu faults", "bounce bytes", "outcome");
        foreach (var r in rows)
            table.Add(r.Name, r.Decision.Summary, r.Ops, $"{r.Completed}/{r.Attempted}", r.Verified.ToString(), r.IommuFaults.ToString(), r.BounceBytes.ToString(), r.Outcome);
        table.Write(stdout);

        stdout.WriteLine();
        stdout.WriteLine("== the 2018 thread's scenarios ==");
        var results = Scenarios.All.Select(Scenarios.Run).ToList();
        ScenarioTable(results, stdout);

        int bad = devices.Count(d => !d.Ok) + rows.Count(r => !r.Clean) + results.Count(r => !r.AsExpected);
        stdout.WriteLine();
        stdout.WriteLine(bad == 0
            ? $"all {devices.Count} device runs and {rows.Count} DMA modes moved verified data; all {results.Count} scenarios ended as expected"
            : $"{bad} checks did not end as expected");
        return bad == 0 ? 0 : 1;
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
        var results = list.Select(Scenarios.Run).ToList();
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
