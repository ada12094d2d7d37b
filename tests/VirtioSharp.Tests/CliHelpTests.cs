using System.Text.RegularExpressions;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>A user's first look: `virtio-sharp --help` lists every command on one line, and every command's --help has examples.</summary>
public sealed class CliHelpTests
{
    private static readonly string[] Commands = ["demo", "scenarios", "explain", "vhost-user-blk", "vhost-user-rng", "vhost-user-net", "install-descriptors", "doctor"];

    /// <summary>The "Commands:" section of the root help: name → its one-line description.</summary>
    private static Dictionary<string, string> Listed(string help)
    {
        var section = help[(help.IndexOf("Commands:", StringComparison.Ordinal) + "Commands:".Length)..];
        section = section[..section.IndexOf("\n\n", StringComparison.Ordinal)];
        var lines = section.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(lines, l => Assert.Matches(@"^  [a-z]", l));   // no wrapped continuation lines
        return lines.Select(l => Regex.Match(l, @"^  (\S+)(?: <\w+>)?\s{2,}(.+)$")).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
    }

    [Fact]
    public void RootHelpListsEveryCommandOnOneLineAndShowsExamples()
    {
        var (rc, o, e) = InProcessCli.Run("--help");
        Assert.True(rc == 0, e);
        var listed = Listed(o);
        Assert.Equal(Commands.Order(), listed.Keys.Order());
        Assert.All(listed, kv => Assert.InRange(kv.Value.Length, 20, 110));
        Assert.Contains("Examples:\n  virtio-sharp doctor", o);
    }

    [Fact]
    public void EveryCommandsHelpHasAnExampleOfThatCommand()
    {
        var (_, root, _) = InProcessCli.Run("--help");
        foreach (var name in Listed(root).Keys)
        {
            var (rc, o, e) = InProcessCli.Run(name, "--help");
            Assert.True(rc == 0, $"{name} --help: {e}");
            int at = o.IndexOf("Examples:\n", StringComparison.Ordinal);
            Assert.True(at >= 0, $"{name} --help has no Examples section:\n{o}");
            Assert.Contains($"  virtio-sharp {name}", o[at..]);
        }
    }
}
