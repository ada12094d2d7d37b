using System.CommandLine;
using System.Text;
using VirtioSharp.Cli.Daemon;

namespace VirtioSharp.Cli;

/// <summary>
/// `virtio-sharp install-descriptors`: vhost-user.rst "Backend program conventions" for every device command. A
/// descriptor (<c>50-virtio-sharp-&lt;device&gt;.json</c>: description, type, binary) goes where QEMU's management
/// layers look for them (/usr/share/qemu/vhost-user, /etc/qemu/vhost-user, $XDG_CONFIG_HOME/qemu/vhost-user), and its
/// binary is a small wrapper that runs <c>virtio-sharp vhost-user-&lt;device&gt;</c>, since the conventions call the
/// binary itself with --socket-path / --fd / --print-capabilities.
/// </summary>
internal static class InstallDescriptorsCommand
{
    public const string DefaultDescriptorDir = "/etc/qemu/vhost-user";
    public const string DefaultLibexecDir = "/usr/local/libexec/virtio-sharp";

    public static Command Create(IReadOnlyList<DeviceCommandSpec> devices, TextWriter stdout, TextWriter stderr)
    {
        var cmd = new Command("install-descriptors", "Install QEMU vhost-user back-end descriptors (JSON) and their wrapper programs for blk and rng");
        var descriptorDir = new Option<string>("--descriptor-dir") { Description = "Where the JSON descriptors go", DefaultValueFactory = _ => DefaultDescriptorDir };
        var libexecDir = new Option<string>("--libexec-dir") { Description = "Where the wrapper programs the descriptors name go", DefaultValueFactory = _ => DefaultLibexecDir };
        var program = new Option<string?>("--program")
        {
            Description = "The virtio-sharp command the wrappers run (default: this one, e.g. the installed dotnet tool)",
        };
        var destDir = new Option<string?>("--dest-dir") { Description = "Staging root prefixed to both directories (packaging; the files still name the final paths)" };
        foreach (var o in new Option[] { descriptorDir, libexecDir, program, destDir }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            string descriptors = r.GetValue(descriptorDir)!, libexec = r.GetValue(libexecDir)!;
            if (!Path.IsPathRooted(descriptors) || !Path.IsPathRooted(libexec))
                return Fail(stderr, "--descriptor-dir and --libexec-dir must be absolute paths (the descriptors name the wrappers by absolute path)");
            string invoke = r.GetValue(program) is { } p ? Quote(p) : ThisProgram();
            string root = r.GetValue(destDir) ?? "";
            try
            {
                foreach (var spec in devices)
                {
                    string wrapper = Path.Combine(libexec, spec.Name);
                    string wrapperFile = Staged(root, wrapper);
                    Directory.CreateDirectory(Path.GetDirectoryName(wrapperFile)!);
                    File.WriteAllText(wrapperFile, $"#!/bin/sh\n# vhost-user back-end program (vhost-user.rst conventions): virtio-sharp {spec.Name}\nexec {invoke} {spec.Name} \"$@\"\n");
                    if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(wrapperFile, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                        UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
                    string json = Path.Combine(descriptors, DescriptorFileName(spec));
                    string jsonFile = Staged(root, json);
                    Directory.CreateDirectory(Path.GetDirectoryName(jsonFile)!);
                    File.WriteAllText(jsonFile, DescriptorJson(spec, wrapper));
                    stdout.WriteLine($"{json}: type {spec.CapabilityType}, binary {wrapper}");
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return Fail(stderr, $"{e.Message} (run as root for the system directories, or pass --descriptor-dir / --libexec-dir / --dest-dir)");
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>50-virtio-sharp-blk.json for vhost-user-blk (50: a distribution's default priority).</summary>
    public static string DescriptorFileName(DeviceCommandSpec spec) => $"50-virtio-sharp-{spec.Name.Replace("vhost-user-", "")}.json";

    /// <summary>The descriptor (docs/interop/vhost-user.json: VhostUserBackend): description, type, binary.</summary>
    public static string DescriptorJson(DeviceCommandSpec spec, string binary)
    {
        var sb = new StringBuilder();
        sb.Append("{\n  \"description\": \"VirtioSharp: ").Append(Escape(spec.Description)).Append("\",\n");
        sb.Append("  \"type\": \"").Append(spec.CapabilityType).Append("\",\n");
        sb.Append("  \"binary\": \"").Append(Escape(binary)).Append("\"\n}\n");
        return sb.ToString();
    }

    private static string Escape(string s) => s.Replace("\\", "\\\\").Replace("\"", "\\\"");

    private static string Staged(string root, string path) => root.Length == 0 ? path : Path.Join(root, path);

    private static int Fail(TextWriter stderr, string message)
    {
        stderr.WriteLine("error: " + message);
        return 2;
    }

    /// <summary>How to run this virtio-sharp again: the tool's own executable, or `dotnet virtio-sharp.dll`.</summary>
    private static string ThisProgram()
    {
        string exe = Environment.ProcessPath ?? "virtio-sharp";
        string dll = typeof(InstallDescriptorsCommand).Assembly.Location;
        return Path.GetFileNameWithoutExtension(exe) == "dotnet" && dll.Length > 0 ? $"{Quote(exe)} {Quote(dll)}" : Quote(exe);
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";
}
