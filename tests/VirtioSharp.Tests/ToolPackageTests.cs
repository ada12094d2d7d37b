using System.IO.Compression;
using System.Reflection;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>
/// The README's install line, proven: <c>dotnet pack</c> of the solution into a temporary local feed, then
/// <c>dotnet tool install --tool-path TMP virtio-sharp --add-source FEED --version V</c> (with an empty NuGet package
/// cache, so the tool comes from this feed and not an older copy), then <c>virtio-sharp --version</c>, <c>demo</c>
/// and the real-guest <c>interop.sh modern</c> case run through the installed tool (VIRTIO_SHARP_BIN). The library
/// packages are checked for what a .NET user expects: README, XML docs, license, repository, symbol package.
/// </summary>
[Collection(RealGuestCollection.Name)]
public sealed class ToolPackageTests : IDisposable
{
    private static readonly TimeSpan Step = TimeSpan.FromMinutes(5);
    private static readonly string[] Libraries = ["VirtioSharp", "VirtioSharp.VhostUser", "VirtioSharp.Simulation", "VirtioSharp.Testing"];
    private readonly string _dir = Directory.CreateTempSubdirectory("vs-tool.").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The version the build under test carries (VersionPrefix of Directory.Build.props, +commit).</summary>
    private static string BuildVersion() =>
        typeof(VirtioSharp.Cli.CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;

    private static ChildProcess.Result Ok(string file, IEnumerable<string> args, TimeSpan limit, IDictionary<string, string>? env = null)
    {
        var r = ChildProcess.Run(file, args, limit, InteropTests.RepoRoot(), env);
        Assert.True(r.ExitCode == 0, $"{file} {string.Join(' ', args)} exited with {r.ExitCode}:\n{ChildProcess.Tail(r.Output)}");
        return r;
    }

    [Fact]
    public void PackedToolInstallsFromALocalFeedAndServesARealGuest()
    {
        string feed = Path.Combine(_dir, "feed"), tools = Path.Combine(_dir, "tools");
        string version = BuildVersion().Split('+')[0];
        // --no-build: the packages hold exactly the Release build the suite tests (scripts/test.sh builds it first).
        Ok("dotnet", ["pack", "VirtioSharp.slnx", "-c", "Release", "--no-build", "-nologo", "-o", feed], Step);

        foreach (var id in Libraries) CheckLibraryPackage(feed, id, version);
        Assert.True(File.Exists(Path.Combine(feed, $"virtio-sharp.{version}.nupkg")), $"no virtio-sharp.{version}.nupkg in the feed");

        var env = new Dictionary<string, string> { ["NUGET_PACKAGES"] = Path.Combine(_dir, "nuget-cache"), ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1" };
        Ok("dotnet", ["tool", "install", "--tool-path", tools, "virtio-sharp", "--add-source", feed, "--version", version], Step, env);
        string tool = Path.Combine(tools, "virtio-sharp");
        Assert.True(File.Exists(tool), $"the tool install made no {tool}");

        var v = Ok(tool, ["--version"], TimeSpan.FromMinutes(1));
        Assert.Equal(BuildVersion(), v.Output.Trim());

        var demo = Ok(tool, ["demo", "--chains", "64"], Step);
        Assert.Matches(new Regex(@"^all \d+ device runs and \d+ DMA modes moved verified data; all \d+ scenarios ended as expected", RegexOptions.Multiline), demo.Output);

        var interop = Ok("bash", ["scripts/testbed/interop.sh", "modern"], TimeSpan.FromMinutes(15),
            new Dictionary<string, string> { ["VIRTIO_SHARP_BIN"] = tool });
        Assert.Contains($"back-end: {tool} ({BuildVersion()})", interop.Output);
        // start_backend logs the command it ran: the guest was served by the installed tool, not the Release build.
        Assert.Contains($"modern: backend: {tool} vhost-user-blk ", interop.Output);
        Assert.Matches(new Regex(@"^\s+modern\s+PASS\s", RegexOptions.Multiline), interop.Output);
    }

    /// <summary>A library package carries its README, XML docs for its assembly, license, repository and a .snupkg.</summary>
    private static void CheckLibraryPackage(string feed, string id, string version)
    {
        string nupkg = Path.Combine(feed, $"{id}.{version}.nupkg");
        Assert.True(File.Exists(nupkg), $"no {id}.{version}.nupkg in the feed: {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");
        Assert.True(File.Exists(Path.ChangeExtension(nupkg, ".snupkg")), $"no symbol package for {id}");
        using var zip = ZipFile.OpenRead(nupkg);
        var names = zip.Entries.Select(e => e.FullName).ToList();
        Assert.Contains("README.md", names);
        Assert.Contains(names, n => n.StartsWith("lib/net10.0/", StringComparison.Ordinal) && n.EndsWith(".xml", StringComparison.Ordinal));
        using var nuspec = zip.GetEntry($"{id}.nuspec")!.Open();
        var meta = XDocument.Load(nuspec).Root!.Elements().First(e => e.Name.LocalName == "metadata");
        string? Get(string name) => meta.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value;
        Assert.False(string.IsNullOrWhiteSpace(Get("description")), $"{id}: no description");
        Assert.Equal("MIT", Get("license"));
        Assert.Equal("README.md", Get("readme"));
        var repo = meta.Elements().First(e => e.Name.LocalName == "repository");
        Assert.Equal("git", repo.Attribute("type")?.Value);
        Assert.StartsWith("https://", repo.Attribute("url")?.Value);
    }
}
