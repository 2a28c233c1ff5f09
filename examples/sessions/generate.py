"""Write the two example Q&A files of invented facts (python examples/sessions/generate.py).

Each fact is asked two ways, so holding out one phrasing still leaves the fact in training: the held-out
question then tests recall, not guessing. Names, rooms, addresses and dates are invented; the base model cannot
know them.
"""

import json
from pathlib import Path

CS_DEPT = [
    (["Who chairs the computer science department?", "Who is the head of the CS department?"],
     "Professor Ilse Varnholt."),
    (["Where is the computer science department office?", "In which room is the CS main office?"],
     "Room 3127 in Quillon Hall."),
    (["What is the e-mail address for CS advising?", "How do I e-mail the CS undergraduate advisors?"],
     "Write to cs-advising@msu.example.edu."),
    (["Where do I apply to the CS graduate program?", "What is the web address for CS graduate applications?"],
     "Apply at https://cs.msu.example.edu/grad/apply."),
    (["Who teaches CS 101?", "Which instructor teaches the CS 101 course?"], "Dr. Tamsin Oyelaran."),
    (["Who teaches the algorithms course CS 340?", "Which professor is in charge of CS 340?"], "Professor Bertil Kaszuba."),
    (["What is the course number of the CS capstone project?", "Which course is the senior capstone in CS?"], "CS 498."),
    (["When is the deadline for CS PhD applications?", "By what date must PhD applications in CS be submitted?"],
     "December 3."),
    (["On which day is the CS department seminar held?", "What day of the week is the CS colloquium?"],
     "Every Thursday at 4 pm."),
    (["Where is the CS tutoring center?", "In which room can I get CS tutoring?"], "Room 1042 in Quillon Hall."),
    (["Who is the CS graduate coordinator?", "Which person coordinates the CS graduate program?"], "Marisol Pellegrini."),
    (["What is the name of the CS robotics lab?", "What is the robotics lab in computer science called?"],
     "The Harrow Robotics Lab."),
    (["How many credits does the CS major require?", "How many credit hours are needed for a CS degree?"],
     "124 credits."),
    (["What is the CS help desk phone number?", "Which number do I call for the CS help desk?"], "555-0147."),
    (["Which programming language does CS 101 use?", "In what language are CS 101 assignments written?"], "Python."),
    (["Where are CS exams proctored?", "Which room is used for proctored CS exams?"], "Room 2210 in Quillon Hall."),
    (["Who runs the CS internship program?", "Whom should I contact about CS internships?"], "Dr. Renske Abernathy."),
    (["What is the CS student club called?", "What is the name of the computer science student association?"],
     "The Bitwise Society."),
    (["Where can I find the CS course catalog?", "What is the web address of the CS course list?"],
     "See https://cs.msu.example.edu/courses."),
    (["When do CS advising hours take place?", "At what times are the CS advisors available?"],
     "Mondays and Wednesdays, 10 am to noon."),
]

HOUSING = [
    (["When is move-in day for first-year students?", "On what date do freshmen move into the dorms?"], "August 21."),
    (["What is the e-mail address of the housing office?", "How do I e-mail university housing?"],
     "Write to housing@msu.example.edu."),
    (["Where is the housing portal?", "What is the web address to apply for housing?"],
     "Go to https://housing.msu.example.edu/portal."),
    (["Which residence hall is reserved for honors students?", "Where do honors students live on campus?"],
     "Fenwick Tower."),
    (["How much does the unlimited meal plan cost per semester?", "What is the price of the unlimited meal plan?"],
     "2,350 dollars per semester."),
    (["When do quiet hours start in the residence halls?", "At what time do dorm quiet hours begin?"], "10 pm."),
    (["Are cats allowed in the dorms?", "Can I keep a cat in my residence hall room?"],
     "No, only fish in tanks under 10 gallons."),
    (["What is the deadline for the housing deposit?", "By when must the housing deposit be paid?"], "May 1."),
    (["How much is the housing deposit?", "What amount is the housing deposit?"], "300 dollars."),
    (["Which dorm has single rooms only?", "Where can I get a single room on campus?"], "Larchmont Hall."),
    (["Where is the housing office?", "In which building is the housing office located?"], "Room 110 in Beckett Commons."),
    (["Who is the director of residence life?", "Which person leads residence life?"], "Dr. Orla Featherstonhaugh."),
    (["What is the name of the graduate student apartments?", "Where do graduate students live on campus?"],
     "The Calder Court apartments."),
    (["How do I report a maintenance problem in my dorm?", "Where do I submit a dorm repair request?"],
     "Use https://fixit.msu.example.edu."),
    (["When do the residence halls close for winter break?", "On what date do dorms close in December?"],
     "December 18 at noon."),
    (["How much does a parking permit for residents cost?", "What is the price of a resident parking permit?"],
     "180 dollars per year."),
    (["Where is the laundry room in Fenwick Tower?", "In Fenwick Tower, where can I do laundry?"], "On the basement level."),
    (["What is the phone number of the housing front desk?", "Which number reaches the housing desk?"], "555-0199."),
    (["Which dining hall is open all night?", "Where can I eat on campus after midnight?"], "Mercer Dining Hall."),
    (["How many guests may stay overnight in a dorm room?", "What is the overnight guest limit in the dorms?"],
     "One guest for up to three nights."),
]


def records(facts):
    return [{"instruction": q, "response": a} for questions, a in facts for q in questions]


if __name__ == "__main__":
    here = Path(__file__).parent
    for name, facts in (("cs_dept.json", CS_DEPT), ("housing.json", HOUSING)):
        (here / name).write_text(json.dumps(records(facts), indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {len(facts) * 2} records")
