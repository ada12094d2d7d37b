using VirtioSharp.Platform;

namespace VirtioSharp.Tests;

public class DemoTests
{
    public static TheoryData<string> Modes() => new(RoundTrip.DmaModes().Select(m => m.Name));

    [Theory]
    [MemberData(nameof(Modes))]
    public void EveryDmaModeMovesVerifiedData(string mode)
    {
        var setup = RoundTrip.DmaModes().Single(m => m.Name == mode);
        var r = RoundTrip.Run(setup with { Chains = 200 });
        Assert.False(r.Decision.Refused, string.Join("\n", r.Decision.Reasons));
        Assert.Null(r.Error);
        Assert.False(r.Hung);
        Assert.Equal(200, r.Attempted);
        Assert.Equal(200, r.Verified);
        Assert.Equal(0, r.IommuFaults);
        Assert.Equal(0, r.ProtectionViolations);
    }

    [Fact]
    public void DemoCommandPrintsEveryModeAndSucceeds()
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = Cli.CliApp.Run(["demo", "--chains", "64"], o, e);
        Assert.Equal(0, rc);
        foreach (var m in RoundTrip.DmaModes()) Assert.Contains(m.Name, o.ToString());
        Assert.Contains("bounce bytes", o.ToString());
        Assert.Contains("all 32 device runs and 11 DMA modes moved verified data; all 19 scenarios ended as expected", o.ToString());
        foreach (var sc in Platform.Scenarios.All) Assert.Contains(sc.Name, o.ToString());
    }

    [Fact]
    public void BadArgumentsGiveNonZeroExitAndOneLineError()
    {
        var o = new StringWriter();
        var e = new StringWriter();
        Assert.NotEqual(0, Cli.CliApp.Run(["explain", "--transport", "isa"], o, e));
        Assert.Contains("isa", e.ToString());
        e = new StringWriter();
        Assert.Equal(2, Cli.CliApp.Run(["explain", "--features", "BOGUS"], o, e));
        Assert.StartsWith("error: unknown feature 'BOGUS'", e.ToString());
    }
}
