using VirtioSharp.Fuzz.Targets;

namespace VirtioSharp.Tests;

/// <summary>
/// Every committed fuzz input (fuzz/corpus/TARGET seeds and fuzz/regressions/TARGET crashes that were fixed) runs
/// once through its target: a target throws only on a bug, so any exception fails the test and names the file.
/// fuzz/pending/ holds inputs of findings not fixed yet; they are not replayed.
/// </summary>
[Collection(FuzzReplayCollection.Name)]
public class FuzzCorpusReplayTests
{
    public static TheoryData<string> Targets => new(FuzzTargets.All.Keys);

    private static string FuzzDir()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "fuzz", "corpus");
            if (Directory.Exists(candidate)) return Path.Combine(dir.FullName, "fuzz");
        }
        throw new DirectoryNotFoundException($"no fuzz/corpus above {AppContext.BaseDirectory}");
    }

    internal static IEnumerable<string> Inputs(string target)
    {
        var fuzz = FuzzDir();
        foreach (var kind in new[] { "corpus", "regressions" })
        {
            var dir = Path.Combine(fuzz, kind, target);
            if (!Directory.Exists(dir)) continue;
            foreach (var f in Directory.EnumerateFiles(dir).Order()) yield return f;
        }
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void EveryInputRunsClean(string target)
    {
        var run = FuzzTargets.All[target].Run;
        var files = Inputs(target).ToList();
        Assert.NotEmpty(files);
        foreach (var f in files)
        {
            try { run(File.ReadAllBytes(f)); }
            catch (Exception e) { Assert.Fail($"{target}: {Path.GetRelativePath(FuzzDir(), f)} threw {e}"); }
        }
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void SeedCorpusMatchesTheGenerator(string target)
    {
        // The committed seeds are what `VirtioSharp.Fuzz --seed TARGET DIR` writes: regenerate them after changing an encoding.
        var dir = Path.Combine(FuzzDir(), "corpus", target);
        foreach (var (name, input) in FuzzTargets.All[target].Seeds())
            Assert.True(File.Exists(Path.Combine(dir, name)) && File.ReadAllBytes(Path.Combine(dir, name)).SequenceEqual(input),
                $"fuzz/corpus/{target}/{name} differs from its generator: run VirtioSharp.Fuzz --seed {target} fuzz/corpus/{target}");
    }
}
