using System.Diagnostics;
using System.Runtime.InteropServices;
using VirtioSharp.Interop;

namespace VirtioSharp.Cli.Doctor;

/// <summary>
/// What `doctor` looks at, replaceable for tests: files under <see cref="Root"/> (/proc, /sys), programs found on
/// <see cref="Path"/>, and the kernel probes (memfd sharing, io_uring) that only the real host can answer.
/// </summary>
internal class DoctorHost
{
    /// <summary>Prefix for /proc and /sys paths ("" on the real host).</summary>
    public string Root { get; init; } = "";
    /// <summary>Directories searched for programs (default: $PATH).</summary>
    public string Path { get; init; } = Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin";

    public string? ReadFile(string path)
    {
        try { return File.ReadAllText(Root + path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    public bool Exists(string path) => File.Exists(Root + path) || Directory.Exists(Root + path);

    public string? FindProgram(string name) =>
        Path.Split(':', StringSplitOptions.RemoveEmptyEntries).Select(d => System.IO.Path.Combine(d, name)).FirstOrDefault(File.Exists);

    /// <summary>Runs a program for at most 30 s; its stdout, or null if it could not run or failed.</summary>
    public virtual string? Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            p.StandardInput.Close();
            var stdout = p.StandardOutput.ReadToEndAsync();
            _ = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(30_000)) { p.Kill(entireProcessTree: true); return null; }
            return p.ExitCode == 0 ? stdout.Result : null;
        }
        catch (System.ComponentModel.Win32Exception) { return null; }
    }

    /// <summary>
    /// A sealed memfd mapped twice MAP_SHARED: a byte written through one mapping must be read through the other, as
    /// the back-end reads what QEMU's guest wrote. Null when it works, else what failed.
    /// </summary>
    public virtual string? ProbeMemfdSharing()
    {
        try
        {
            using var fd = MemFd.Create("virtio-sharp-doctor", 1 << 21);
            using var a = MappedRegion.Map(fd, 1 << 21, 0);
            using var b = MappedRegion.Map(fd, 1 << 21, 0);
            Marshal.WriteByte(a.Address, 4096, 0xA5);
            return Marshal.ReadByte(b.Address, 4096) == 0xA5 ? null : "a byte written through one shared mapping was not seen through the other";
        }
        catch (IOException e) { return e.Message; }
    }

    /// <summary>0 when an io_uring can be set up, else the errno.</summary>
    public virtual int ProbeIoUring()
    {
        int rc = IoUring.TryCreate(8, out var ring);
        ring?.Dispose();
        return rc;
    }

    public virtual string DescribeErrno(int errno) => LibC.Describe(errno);

    public virtual bool IsLinux => RuntimeInformation.IsOSPlatform(OSPlatform.Linux);
}
