namespace VirtioSharp.Cli.Doctor;

/// <summary>How a doctor check ended.</summary>
internal enum DoctorStatus { Ok, Info, Warn, Fail }

/// <summary>One finding of `virtio-sharp doctor`: what was checked, what was found, and what to change (if anything).</summary>
internal sealed record DoctorCheck(string Name, DoctorStatus Status, string Finding, string? Fix = null);
