using VirtioSharp.Cli;
using VirtioSharp.Platform;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>The command line, run in-process: scenarios (all, one, verbose, unknown) and explain's decisions.</summary>
public class CliTests
{
    private static (int Rc, string Out, string Err) Run(params string[] args) => InProcessCli.Run(args);

    private static string[] Lines(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public void ScenariosPrintsEveryScenarioAndSucceeds()
    {
        var (rc, o, e) = Run("scenarios");
        Assert.Equal(0, rc);
        Assert.Equal("", e);
        foreach (var s in Scenarios.All)
        {
            var row = Lines(o).SingleOrDefault(l => l.StartsWith(s.Name + " ", StringComparison.Ordinal));
            Assert.True(row is not null, $"no row for {s.Name}");
            Assert.Contains(s.Expected.ToString(), row);
            Assert.DoesNotContain("(expected", row);
        }
        Assert.DoesNotContain("trace:", o);
    }

    [Fact]
    public void OneScenarioVerbosePrintsItsEvidenceAndTrace()
    {
        const string name = "iommu-access-platform-strict";
        var s = Scenarios.Find(name);
        var (rc, o, e) = Run("scenarios", name, "-v");
        Assert.Equal(0, rc);
        Assert.Equal("", e);
        Assert.StartsWith($"{name}: {s.Description}", o);
        Assert.Contains($"outcome: {s.Expected} (expected {s.Expected})", o);
        Assert.Contains("evidence: ", o);
        var trace = Lines(o).Where(l => l.StartsWith("trace: ", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(trace);
        Assert.Contains(trace, l => l.Contains("decision: iommu ops"));
        Assert.Contains(trace, l => l.Contains("DRIVER_OK"));
        // Other scenarios are not run.
        Assert.DoesNotContain(Scenarios.All.First(x => x.Name != name).Description, o);

        var (rc2, quiet, _) = Run("scenarios", name);
        Assert.Equal(0, rc2);
        Assert.Contains("evidence: ", quiet);
        Assert.DoesNotContain("trace: ", quiet);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("1000001")]
    public void PollUsOutsideItsRangeExitsTwoSayingTheRange(string value)
    {
        var (rc, _, e) = Run("vhost-user-blk", "--socket-path", "/tmp/vs-never-used.sock", "--poll-us", value);
        Assert.Equal(2, rc);
        Assert.Contains("--poll-us must be 0..1000000", e);
    }

    [Fact]
    public void UnknownScenarioExitsTwoWithOneLineError()
    {
        var (rc, o, e) = Run("scenarios", "no-such-scenario");
        Assert.Equal(2, rc);
        Assert.Equal("", o);
        var lines = Lines(e);
        Assert.Single(lines);
        Assert.StartsWith("error: no scenario named 'no-such-scenario'", lines[0]);
        Assert.Contains(Scenarios.All[0].Name, lines[0]);
    }

    [Fact]
    public void ExplainWarnsAboutTheLegacyMmioIommuHang()
    {
        var (rc, o, _) = Run("explain", "--transport", "mmio-legacy", "--iommu");
        Assert.Equal(0, rc);
        Assert.StartsWith("decision: direct ops", o);
        Assert.Contains("warning: the device is behind a translating IOMMU but did not negotiate ACCESS_PLATFORM", o);
        Assert.Contains("boot hang", o);
        // With the quirk the same machine gets IOMMU ops and no hang warning.
        var (rc2, q, _) = Run("explain", "--transport", "mmio-legacy", "--iommu", "--legacy-iommu-quirk");
        Assert.Equal(0, rc2);
        Assert.StartsWith("decision: iommu ops", q);
        Assert.DoesNotContain("boot hang", q);
    }

    [Fact]
    public void ExplainRefusesRestrictedMemoryWithoutAccessPlatform()
    {
        var (rc, o, _) = Run("explain", "--restricted");
        Assert.Equal(1, rc);
        Assert.StartsWith("decision: refused", o);
        Assert.Contains("refused: the platform restricts memory access", o);
        Assert.Contains("lacks ACCESS_PLATFORM", o);
        // Offering ACCESS_PLATFORM turns the refusal into bounce ops.
        var (rc2, b, _) = Run("explain", "--restricted", "--features", "VERSION_1,ACCESS_PLATFORM");
        Assert.Equal(0, rc2);
        Assert.StartsWith("decision: bounce ops", b);
    }

    [Fact]
    public void ExplainPicksIommuOpsForAccessPlatformBehindAnIommu()
    {
        var (rc, o, _) = Run("explain", "--features", "VERSION_1,ACCESS_PLATFORM", "--iommu");
        Assert.Equal(0, rc);
        Assert.StartsWith("decision: iommu ops", o);
        Assert.Contains("features: VERSION_1|ACCESS_PLATFORM", o);
        Assert.Contains("IOMMU ops map each buffer", o);
        // Without --iommu the same features give direct ops.
        var (_, d, _) = Run("explain", "--features", "VERSION_1,ACCESS_PLATFORM");
        Assert.StartsWith("decision: direct ops", d);
    }

    // explain --connect: the decision for a real connection, from what the back-end offers, and what it can reach.
    [Theory]
    [InlineData(new string[0], "direct ops", "all 64 MiB of RAM, by guest-physical address")]
    [InlineData(new[] { "--bounce-only" }, "bounce ops", "the 64 MiB of RAM stay private")]
    [InlineData(new[] { "--frontend-iommu", "Strict" }, "iommu ops", "reaches only the IOVAs this front-end's IOMMU maps")]
    public void ExplainConnectDescribesARealConnection(string[] mode, string decision, string shared)
    {
        using var rig = new Support.VhostRig();
        var (rc, o, e) = Run(["explain", "--connect", rig.SocketPath, .. mode]);
        Assert.True(rc == 0, e + o);
        Assert.Contains("decision: " + decision, o);
        Assert.Contains(shared, o);
        Assert.Contains("offered: ", o);
    }

    [Fact]
    public void ExplainConnectToNothingExitsTwoNamingTheSocket()
    {
        var (rc, _, e) = Run("explain", "--connect", "/tmp/vs-no-such-backend.sock");
        Assert.Equal(2, rc);
        Assert.Contains("/tmp/vs-no-such-backend.sock", e);
    }
}
