using System.CommandLine;

namespace VirtioSharp.Cli.Doctor;

/// <summary>`virtio-sharp doctor`: one line per check, a fix under each that needs one; exit 1 if a required check failed.</summary>
internal static class DoctorCommand
{
    public static Command Create(TextWriter stdout, DoctorHost? host = null)
    {
        var cmd = new Command("doctor", "Check this host for what the vhost-user back-ends need and say what to change");
        var qemu = new Option<string>("--qemu") { Description = "The QEMU to check (a name on PATH or a path)", DefaultValueFactory = _ => "qemu-system-x86_64" };
        cmd.Options.Add(qemu);
        cmd.SetAction(r => Print(HostDoctor.Run(host ?? new DoctorHost(), r.GetValue(qemu)!), stdout));
        return cmd;
    }

    public static int Print(IReadOnlyList<DoctorCheck> checks, TextWriter stdout)
    {
        foreach (var c in checks)
        {
            stdout.WriteLine($"{c.Status.ToString().ToLowerInvariant(),-5} {c.Name,-13} {c.Finding}");
            if (c.Fix is not null) stdout.WriteLine($"{"",-5} {"",-13} fix: {c.Fix}");
        }
        int failed = checks.Count(c => c.Status == DoctorStatus.Fail), warned = checks.Count(c => c.Status == DoctorStatus.Warn);
        stdout.WriteLine(failed > 0 ? $"{failed} check(s) failed: the back-ends cannot run here until they are fixed"
            : warned > 0 ? $"ready, with {warned} warning(s)" : "ready");
        return failed > 0 ? 1 : 0;
    }
}
