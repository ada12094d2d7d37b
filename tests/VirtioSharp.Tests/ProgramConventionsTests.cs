using System.Text.Json;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>
/// vhost-user.rst "Backend program conventions" as shipped: the JSON descriptors under dist/qemu-vhost-user are what
/// <c>virtio-sharp install-descriptors</c> installs, each names a binary that answers --print-capabilities with the
/// same type, and the systemd units under dist/systemd pass <c>systemd-analyze verify</c> (their socket activation
/// itself runs in <see cref="CliFdTests"/>, "shipped-unit").
/// </summary>
public sealed class ProgramConventionsTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);
    // docs/interop/vhost-user.json, VHostUserBackendType.
    private static readonly string[] BackendTypes = ["9p", "balloon", "block", "caif", "console", "crypto", "gpu", "input", "net", "rng", "rpmsg", "rproc-serial", "scsi", "vsock", "fs"];
    private readonly string _dir = Directory.CreateTempSubdirectory("vs-conventions.").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Dist(string sub) => Path.Combine(InteropTests.RepoRoot(), "dist", sub);

    [Fact]
    public void InstalledDescriptorsAreTheShippedOnesAndTheirBinariesPrintTheSameType()
    {
        string staged = Path.Combine(_dir, "root");
        using (var cli = CliProcess.Start("install-descriptors", "--dest-dir", staged))
            Assert.True(cli.WaitForExit(Limit) == 0, cli.Output);
        var shipped = Directory.GetFiles(Dist("qemu-vhost-user"), "*.json").OrderBy(f => f).ToList();
        Assert.Equal(["50-virtio-sharp-blk.json", "50-virtio-sharp-net.json", "50-virtio-sharp-rng.json"], shipped.Select(Path.GetFileName));
        // Every device command gets a descriptor, and every one installed is shipped.
        Assert.Equal(shipped.Select(Path.GetFileName), Directory.GetFiles(Path.Join(staged, "/etc/qemu/vhost-user"), "*.json").Select(Path.GetFileName).Order());
        foreach (var file in shipped)
        {
            string installed = Path.Join(staged, "/etc/qemu/vhost-user", Path.GetFileName(file));
            Assert.True(File.Exists(installed), $"install-descriptors did not write {installed}");
            Assert.Equal(File.ReadAllText(file), File.ReadAllText(installed));

            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            var root = doc.RootElement;
            Assert.False(string.IsNullOrWhiteSpace(root.GetProperty("description").GetString()), $"{file}: no description");
            string type = root.GetProperty("type").GetString()!;
            Assert.Contains(type, BackendTypes);
            string binary = root.GetProperty("binary").GetString()!;
            Assert.True(Path.IsPathRooted(binary), $"{file}: binary {binary} is not absolute");

            // The management layer runs the binary with --print-capabilities: the staged wrapper must answer it.
            var caps = ChildProcess.Run(Path.Join(staged, binary), ["--print-capabilities"], Limit);
            Assert.True(caps.ExitCode == 0, $"{binary} --print-capabilities exited {caps.ExitCode}:\n{caps.Output}");
            using var capsDoc = JsonDocument.Parse(caps.Output);
            Assert.Equal(type, capsDoc.RootElement.GetProperty("type").GetString());
        }
    }

    [Theory]
    [InlineData("--descriptor-dir")]
    [InlineData("--libexec-dir")]
    public void RelativeDirectoriesAreRefusedNamingTheFlag(string flag)
    {
        var (rc, _, err) = InProcessCli.Run("install-descriptors", flag, "relative/dir", "--dest-dir", _dir);
        Assert.Equal(2, rc);
        Assert.Contains(flag, err);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void ShippedSystemdUnitsPassSystemdAnalyzeVerify()
    {
        const string analyze = "/usr/bin/systemd-analyze";
        Assert.True(File.Exists(analyze), $"{analyze} is missing (package systemd)");
        // verify insists that ExecStart's program exists: point it at this build, as the installed tool would be.
        string dll = Path.Combine(AppContext.BaseDirectory, "virtio-sharp.dll");
        string dotnet = ChildProcess.Run("sh", ["-c", "command -v dotnet"], Limit).Output.Trim();
        var units = Directory.GetFiles(Dist("systemd")).OrderBy(f => f).ToList();
        Assert.Equal(["virtio-sharp-blk@.service", "virtio-sharp-blk@.socket", "virtio-sharp-rng.service", "virtio-sharp-rng.socket"], units.Select(Path.GetFileName));
        foreach (var u in units)
        {
            string text = File.ReadAllText(u);
            if (u.EndsWith(".service", StringComparison.Ordinal))
                Assert.Contains("ExecStart=/usr/local/bin/virtio-sharp ", text);
            File.WriteAllText(Path.Combine(_dir, Path.GetFileName(u)), text.Replace("/usr/local/bin/virtio-sharp", $"{dotnet} {dll}"));
        }
        var r = ChildProcess.Run(analyze, ["verify", .. units.Select(u => Path.Combine(_dir, Path.GetFileName(u)))], Limit);
        Assert.True(r.ExitCode == 0 && r.Output.Trim().Length == 0, $"systemd-analyze verify exited {r.ExitCode}:\n{r.Output}");
    }
}
