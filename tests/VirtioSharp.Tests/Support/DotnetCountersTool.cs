using System.Globalization;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// The real <c>dotnet-counters</c> (a NuGet dotnet tool), installed once per test run into a temporary tool path, and
/// reading the CSV its <c>collect</c> command writes.
/// </summary>
internal static class DotnetCountersTool
{
    // The version nuget.tsv lists as installable here; pinned so a new release cannot change what the tests run.
    private const string Version = "10.0.750501";

    private static readonly Lazy<string> Installed = new(() =>
    {
        string tools = Directory.CreateTempSubdirectory("vs-dotnet-counters.").FullName;
        var install = ChildProcess.Run("dotnet", ["tool", "install", "--tool-path", tools, "dotnet-counters", "--version", Version],
            TimeSpan.FromMinutes(5), tools, new Dictionary<string, string> { ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1" });
        Assert.True(install.ExitCode == 0, $"dotnet tool install dotnet-counters {Version} failed:\n{install.Output}");
        return System.IO.Path.Combine(tools, "dotnet-counters");
    });

    /// <summary>The installed <c>dotnet-counters</c> executable (installs it on first use).</summary>
    public static string Path => Installed.Value;

    /// <summary>
    /// The largest value <paramref name="counter"/> of <paramref name="provider"/> reached in a <c>collect --format csv</c>
    /// file (rates per interval for counters, values for up-down counters and gauges); -1 if it never appeared.
    /// </summary>
    public static double Max(string csv, string provider, string counter) =>
        File.ReadAllLines(csv).Skip(1).Select(l => l.Split(','))
            .Where(f => f.Length >= 5 && f[1] == provider && f[2].StartsWith(counter + " ", StringComparison.Ordinal))
            .Select(f => double.Parse(f[^1], CultureInfo.InvariantCulture)).DefaultIfEmpty(-1).Max();
}
