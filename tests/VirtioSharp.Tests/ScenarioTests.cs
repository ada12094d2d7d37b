using VirtioSharp.Platform;

namespace VirtioSharp.Tests;

public class ScenarioTests
{
    public static TheoryData<string> Names() => new(Scenarios.All.Select(s => s.Name));

    [Theory]
    [MemberData(nameof(Names))]
    public void ScenarioEndsAsThe2018ThreadSays(string name)
    {
        var s = Scenarios.Find(name);
        var r = Scenarios.Run(s);
        Assert.True(r.AsExpected, $"{name}: expected {s.Expected}, got {r.Outcome}\n{string.Join("\n", r.Evidence)}\n{string.Join("\n", r.Trace)}");
        Assert.NotEmpty(r.Evidence);
    }
}
