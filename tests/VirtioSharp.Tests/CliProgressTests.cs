using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>
/// Long commands show progress on a terminal and nowhere else: `scenarios` run under a pseudo-terminal (util-linux
/// `script`) rewrites a "[i/n] name" line; with stderr redirected it prints none.
/// </summary>
public sealed class CliProgressTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(3);

    [Fact]
    public void ScenariosShowProgressOnATerminalOnly()
    {
        const string script = "/usr/bin/script";
        Assert.True(File.Exists(script), $"{script} is missing (package util-linux)");
        string dll = Path.Combine(AppContext.BaseDirectory, "virtio-sharp.dll");
        var tty = ChildProcess.Run(script, ["-q", "-e", "-c", $"dotnet '{dll}' scenarios", "/dev/null"], Limit);
        Assert.True(tty.ExitCode == 0, tty.Output);
        // ChildProcess reads by line, and a carriage return ends one: each rewrite of the line is a line here.
        Assert.Matches(@"(?m)^scenarios \[1/\d+\] \S+", tty.Output);
        Assert.Matches(@"(?m)^scenarios \[(\d+)/\1\] \S+", tty.Output);   // the last one too

        var redirected = ChildProcess.Run("dotnet", [dll, "scenarios"], Limit);
        Assert.True(redirected.ExitCode == 0, redirected.Output);
        Assert.DoesNotContain("scenarios [1/", redirected.Output);
    }
}
